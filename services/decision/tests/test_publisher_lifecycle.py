"""The decision publisher across app lifespans: closed at shutdown, made again at a start.

An ASGI server runs the lifespan once, but a harness (schemathesis' ASGI
transport, a second ``TestClient``) may shut the app down and start it again;
the producer released at the first shutdown must not break the second start,
and a second shutdown must not touch a released client.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from rtml_common.config import KafkaSettings
from rtml_common.events import Decision, Outcome, Transaction
from rtml_common.kafka.admin import ensure_topics
from rtml_common.kafka.producer import EventProducer
from rtml_decision.metrics import DecisionMetrics
from rtml_decision.outputs import DecisionPublisher
from rtml_localstack.testing import KafkaBroker, consume

pytestmark = pytest.mark.integration


def _pair(tx: str) -> tuple[Decision, Transaction]:
    now = datetime.now(UTC)
    transaction = Transaction(transaction_id=tx, event_time=now, customer_id="c-1",
                              terminal_id="t-1", amount=10.0)
    decision = Decision(transaction_id=tx, customer_id="c-1", event_time=now,
                        outcome=Outcome.APPROVE, rule_set_version="1", latency_ms=1.0,
                        decided_at=now)
    return decision, transaction


def test_a_restarted_publisher_publishes_with_a_new_producer(
        fresh_kafka_broker: KafkaBroker) -> None:
    kafka = KafkaSettings(bootstrap_servers=fresh_kafka_broker.bootstrap_servers)
    ensure_topics(kafka.bootstrap_servers, ["decisions", "transactions"], replication_factor=1)
    made: list[EventProducer] = []

    def new_producer() -> EventProducer:
        made.append(EventProducer(kafka))
        return made[-1]

    publisher = DecisionPublisher(EventProducer(kafka), DecisionMetrics(), flush_interval_s=0.1,
                                  new_producer=new_producer)
    first = publisher.producer
    publisher.start()
    publisher.publish(*_pair("lifecycle-1"))
    publisher.close()
    assert first.closed and not made
    publisher.close()  # a second shutdown: nothing to do, no error

    publisher.start()
    assert made == [publisher.producer] and not publisher.producer.closed
    publisher.publish(*_pair("lifecycle-2"))
    publisher.close()
    assert publisher.producer.closed
    ids = {orjson.loads(r.value or b"{}")["transaction_id"] for r in consume(
        kafka.bootstrap_servers, "decisions", 2, timeout_s=30)}
    assert ids == {"lifecycle-1", "lifecycle-2"}


def test_without_a_factory_a_closed_publisher_says_it_cannot_start(
        kafka_broker: KafkaBroker) -> None:
    publisher = DecisionPublisher(
        EventProducer(KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers)),
        DecisionMetrics())
    publisher.close()
    with pytest.raises(RuntimeError, match="cannot make a new producer"):
        publisher.start()
