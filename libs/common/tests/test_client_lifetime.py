"""No Kafka client outlives its owner: closed clients stay quiet when their broker goes away.

A librdkafka client that is flushed but not closed keeps its broker connections
and, once the broker stops, prints ``Connection refused`` lines on stderr for as
long as the process lives. Each test stops a fresh broker while a deliberately
unclosed *control* producer is still connected
(:func:`rtml_localstack.client_logs.clients_failing_after_stop`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rtml_common.config import KafkaSettings
from rtml_common.events import Transaction
from rtml_common.kafka.admin import ensure_topics
from rtml_common.kafka.consumer import ConsumerLoop, Record
from rtml_common.kafka.producer import EventProducer
from rtml_localstack.client_logs import clients_failing_after_stop

pytestmark = pytest.mark.integration

TOPIC = "transactions"


def settings(bootstrap: str, client_id: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=bootstrap, client_id=client_id,
                         flush_timeout_s=5.0, session_timeout_ms=6000, poll_timeout_s=0.2)


def failing_after_stop(broker: Any, capfd: pytest.CaptureFixture[str],
                       control: EventProducer) -> set[str]:
    """Other clients still reconnecting once the open ``control`` producer complains."""
    try:
        return clients_failing_after_stop(broker, lambda: capfd.readouterr().err,
                                          f"{control.settings.client_id}-producer")
    finally:
        control.close(flush=False)


@pytest.fixture
def connected_producer() -> Iterator[Callable[[str, str], EventProducer]]:
    """``factory(bootstrap, client_id)``: a producer that has delivered a record, so it
    holds a live broker connection; whatever a failing test left open is closed after."""
    made: list[EventProducer] = []

    def factory(bootstrap: str, client_id: str) -> EventProducer:
        producer = EventProducer(settings(bootstrap, client_id))
        made.append(producer)
        producer.send_raw(TOPIC, b"k", b"v")
        producer.flush()
        return producer

    yield factory
    for producer in made:
        producer.close(flush=False)


def test_a_closed_producer_does_not_reconnect_to_a_stopped_broker(
        fresh_kafka_broker: Any, capfd: pytest.CaptureFixture[str],
        connected_producer: Callable[[str, str], EventProducer]) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, [TOPIC], replication_factor=1)
    control = connected_producer(bootstrap, "control")
    with connected_producer(bootstrap, "with-block"):
        pass
    closed = connected_producer(bootstrap, "closed")
    closed.close()
    closed.close()  # a second close is a no-op

    assert failing_after_stop(fresh_kafka_broker, capfd, control) == set()
    with pytest.raises(RuntimeError, match="closed"):
        closed.send_raw(TOPIC, b"k", b"v")


def test_a_consumer_loop_closes_the_producer_it_made_and_not_one_it_was_given(
        fresh_kafka_broker: Any, capfd: pytest.CaptureFixture[str],
        connected_producer: Callable[[str, str], EventProducer]) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, [TOPIC, f"{TOPIC}.dlq"], replication_factor=1)
    given = connected_producer(bootstrap, "given")
    given.send_raw(TOPIC, b"k", b"not json")  # dead letters: the loop's producer connects
    given.flush()

    def handle(_batch: list[Record[Transaction]]) -> None:
        pass

    own = ConsumerLoop({TOPIC: Transaction}, "lifetime-own", handle,
                       settings(bootstrap, "loop-own"))
    own.run(max_idle_s=1.0)
    assert own.stats.dead_lettered >= 1  # so its own producer did connect
    shared = ConsumerLoop({TOPIC: Transaction}, "lifetime-shared", handle,
                          settings(bootstrap, "loop-shared"), producer=given)
    shared.run(max_idle_s=1.0)
    given.send_raw(TOPIC, b"k", b"v")  # still usable: its owner closes it
    given.flush()

    # ``given``, left open, is the control; the consumers (closed by the loops) and
    # the producer the first loop made are silent.
    assert failing_after_stop(fresh_kafka_broker, capfd, given) == set()
