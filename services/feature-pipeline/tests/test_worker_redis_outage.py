"""A batch whose Redis write fails (Redis unavailable) delivers the same outputs when retried.

fault-findings F1: the consumer loop now waits out a Redis outage and retries
the batch, but the worker had applied it to its computer before the write.
Applying it again is not the same batch: its older transactions are late
against the watermark its newer ones moved, a label revises only once. So the
retry must deliver what the first attempt computed — the online-store values
and the vectors — and nothing else (no late record, no vector twice).
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_common.dependency import is_outage
from rtml_common.events import FeatureVector, Label, Transaction
from rtml_common.kafka.consumer import Record
from rtml_common.kafka.producer import EventProducer
from rtml_common.serde import encode, headers_for
from rtml_common.topics import spec_for_event
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.inputs import decode_label_input, decode_transaction_input
from rtml_feature_pipeline.kafka_engine import build_worker
from rtml_feature_pipeline.parity import redis_entity_state
from rtml_feature_pipeline.worker import FeatureWorker
from rtml_localstack.testing import consume

pytestmark = pytest.mark.integration

TRANSACTIONS = spec_for_event(Transaction).name
LABELS = spec_for_event(Label).name


def batch() -> list[Record[Any]]:
    """Two transactions 5 minutes apart (lateness 60 s: applied again, the first is late
    against the watermark the second moved) and a fraud label of the first."""
    headers = headers_for(Transaction)
    early = Transaction(transaction_id="outage-1", customer_id="c1", terminal_id="t1",
                        amount=12.5, event_time="2018-04-01T14:00:00Z")
    later = Transaction(transaction_id="outage-2", customer_id="c1", terminal_id="t2",
                        amount=40.0, event_time="2018-04-01T14:05:00Z")
    label = Label(transaction_id="outage-1", customer_id="c1", transaction_time=early.event_time,
                  labeled_at="2018-04-01T14:06:00Z", is_fraud=True)
    return [
        Record(TRANSACTIONS, 0, 0, b"c1", decode_transaction_input(encode(early), headers),
               headers, 1),
        Record(TRANSACTIONS, 0, 1, b"c1", decode_transaction_input(encode(later), headers),
               headers, 2),
        Record(LABELS, 0, 0, b"c1", decode_label_input(encode(label), headers_for(Label)),
               headers_for(Label), 3),
    ]


def worker_on(kafka: KafkaSettings, url: str, group: str) -> FeatureWorker:
    worker = build_worker(Settings(allowed_lateness_s=60, consumer_group=group), kafka,
                          RedisSettings(url=url), EventProducer(kafka))
    worker.checkpoint_interval_s = 0  # a checkpoint after every batch (Redis again)
    worker.published = None  # this test reads the features topic itself
    worker.computer.expect_sources([f"{TRANSACTIONS}:0"])
    return worker


def test_a_batch_retried_after_a_redis_outage_writes_and_publishes_what_it_computed(
        fresh_kafka_broker: Any, fresh_redis_server: Any) -> None:
    kafka = KafkaSettings(bootstrap_servers=fresh_kafka_broker.bootstrap_servers)
    worker = worker_on(kafka, fresh_redis_server.url, "outage-unit")

    fresh_redis_server.stop()
    with pytest.raises(Exception) as raised:
        worker.handle(batch())
    assert is_outage(raised.value), raised.value  # the loop waits for it, never dead-letters
    assert worker.vectors_published == 0
    fresh_redis_server.start()  # back, empty
    worker.handle(batch())  # the loop's retry: the same records
    worker.producer.flush()

    assert (worker.late_events, worker.quarantined) == (0, 0)
    assert worker.events_applied == 3  # applied once
    vectors = [FeatureVector.model_validate_json(r.value or b"")
               for r in consume(fresh_kafka_broker.bootstrap_servers,
                                spec_for_event(FeatureVector).name, worker.vectors_published)]
    # Each transaction's vector once (applied again, the first one would have gone late).
    assert sorted((v.transaction_id, v.revision) for v in vectors) == [
        ("outage-1", 0), ("outage-2", 0)]
    assert worker.checkpoints is not None and worker.checkpoints.load() is not None

    # The online store holds what an uninterrupted worker writes for the same batch.
    reference = worker_on(kafka, fresh_redis_server.url.rsplit("/", 1)[0] + "/2", "reference")
    reference.handle(batch())
    assert reference.vectors_published == 2
    after_outage = redis_entity_state(redis.Redis.from_url(fresh_redis_server.url))
    assert after_outage and after_outage == redis_entity_state(
        redis.Redis.from_url(fresh_redis_server.url.rsplit("/", 1)[0] + "/2"))


def test_entities_no_later_record_touches_are_rewritten_when_redis_returns_empty(
        fresh_kafka_broker: Any, fresh_redis_server: Any) -> None:
    kafka = KafkaSettings(bootstrap_servers=fresh_kafka_broker.bootstrap_servers)
    worker = worker_on(kafka, fresh_redis_server.url, "resync-unit")
    worker.handle(batch())
    client = redis.Redis.from_url(fresh_redis_server.url)
    before = redis_entity_state(client)
    assert len(before) == 3  # c1, t1, t2: an event log each (the default prefix layout)

    fresh_redis_server.stop()  # between batches: no write of the worker fails
    fresh_redis_server.start()
    assert redis_entity_state(client) == {}
    worker.checkpoint()  # finds the marker gone: writes every entity's last values and logs again

    assert redis_entity_state(client) == before
    assert worker.vectors_published == 2  # rewriting the store publishes nothing
