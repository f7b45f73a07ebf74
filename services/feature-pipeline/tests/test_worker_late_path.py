"""A transaction beyond the allowed lateness goes to ``transactions.late``, as it was read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_common.events import Transaction
from rtml_common.kafka.consumer import Record
from rtml_common.kafka.producer import EventProducer
from rtml_common.serde import decode, headers_for
from rtml_common.topics import late_topic, spec_for_event
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.inputs import decode_transaction_input
from rtml_feature_pipeline.kafka_engine import build_worker
from rtml_feature_pipeline.worker import LATE_REASON_HEADER
from rtml_localstack.testing import consume

pytestmark = pytest.mark.integration

TOPIC = spec_for_event(Transaction).name


def transaction(tid: str, event_time: str) -> bytes:
    # Deliberately not the canonical spelling: the late record must be forwarded as read.
    return json.dumps({"transaction_id": tid, "event_time": event_time, "customer_id": "c1",
                       "terminal_id": "t1", "amount": 12.5}).encode()


def test_a_late_transaction_is_forwarded_unchanged_with_its_reason(
        fresh_kafka_broker: Any, redis_server: Any) -> None:
    kafka_broker = fresh_kafka_broker  # the late topic must hold only this test's records
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers)
    producer = EventProducer(kafka)
    worker = build_worker(Settings(allowed_lateness_s=60, consumer_group="late-path"), kafka,
                          RedisSettings(url=redis_server.url), producer)
    worker.checkpoints = None
    worker.computer.expect_sources([f"{TOPIC}:0"])
    headers = headers_for(Transaction)
    on_time = transaction("late-path-1", "2018-04-01T14:00:00+02:00")
    late = transaction("late-path-2", "2018-04-01T13:58:00.000+02:00")  # 2 min behind
    pydantic_late = transaction("late-path-3", "2018-04-01T11:50:00Z")  # as another engine hands it

    worker.handle([Record(TOPIC, 0, 0, b"c1", decode_transaction_input(on_time, headers),
                          headers, 1)])
    worker.handle([Record(TOPIC, 0, 1, b"c1", decode_transaction_input(late, headers),
                          headers, 2),
                   Record(TOPIC, 0, 2, b"c1", decode(pydantic_late, Transaction), headers, 3)])
    producer.flush()

    assert worker.late_events == 2
    assert worker.offsets[(TOPIC, 0)] == 3  # covered: a restart does not send them again
    forwarded = consume(kafka_broker.bootstrap_servers, late_topic(TOPIC), 2)
    by_key = {record.value: record for record in forwarded}
    assert late in by_key  # byte for byte
    reason = dict(by_key[late].headers)[LATE_REASON_HEADER]
    assert reason is not None and b"late-path-2" in reason and b"behind the watermark" in reason
    (other,) = (record for record in forwarded if record.value != late)
    assert decode(other.value, Transaction) == decode(pydantic_late, Transaction)
    assert worker.vectors_published == 1
