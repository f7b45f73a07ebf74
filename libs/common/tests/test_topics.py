"""Topic registry: every event has a topic, keys co-partition the customer streams."""

import pytest

from rtml_common.events import Event
from rtml_common.kafka.admin import default_partitions
from rtml_common.topics import (
    TOPICS,
    all_topic_names,
    dead_letter_topic,
    spec_for,
    spec_for_event,
)

REQUIRED = {"transactions", "labels", "features", "predictions", "shadow-scores", "decisions",
            "drift-alerts", "retrain-requests", "model-events"}


def test_every_required_topic_exists_with_a_dead_letter_twin() -> None:
    assert set(TOPICS) == REQUIRED
    names = all_topic_names()
    for topic in REQUIRED:
        assert dead_letter_topic(topic) in names
    assert len(names) == len(set(names))


def test_customer_streams_are_co_partitioned() -> None:
    customer_topics = ["transactions", "labels", "features"]
    assert {TOPICS[t].key_field for t in customer_topics} == {"customer_id"}
    assert len({default_partitions(t) for t in customer_topics}) == 1


def test_each_event_type_maps_to_exactly_one_topic() -> None:
    for name, spec in TOPICS.items():
        assert spec_for_event(spec.event_type).name == name
        assert spec.key_field in spec.event_type.model_fields
    with pytest.raises(KeyError, match="no topic carries Event"):
        spec_for_event(Event)


def test_unknown_topic_error_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="known topics: decisions"):
        spec_for("transaction")


def test_dead_letter_topics_get_one_partition() -> None:
    assert default_partitions("transactions.dlq") == 1
