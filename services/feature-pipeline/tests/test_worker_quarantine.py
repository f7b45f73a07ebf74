"""Issue #17: a far-future transaction or label is quarantined and poisons nothing.

Against a real broker and Redis: valid transactions and labels are replayed,
then a transaction and a label at 9999-12-31 for the same customer and
terminal (same partition), then more valid ones. The worker runs twice (the
second resumes from the first's checkpoint, as after a restart). The poison
records must be in the dead-letter topics, byte for byte with their reason;
no valid transaction may go to ``transactions.late``; the Redis hashes and the
watermarks must follow the valid events only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_common.events import Label, Transaction
from rtml_common.kafka.admin import ensure_topics
from rtml_common.kafka.dead_letter import DeadLetter
from rtml_common.kafka.producer import EventProducer
from rtml_common.serde import headers_for
from rtml_common.topics import dead_letter_topic, spec_for_event
from rtml_feature_pipeline import kafka_engine
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.event_time_guard import ERROR_TYPE
from rtml_feature_pipeline.worker import FeatureWorker
from rtml_features.baseline import BASELINE
from rtml_features.rows import epoch_ms
from rtml_localstack.testing import consume

pytestmark = pytest.mark.integration

TRANSACTIONS = spec_for_event(Transaction).name
LABELS = spec_for_event(Label).name
START = datetime(2018, 4, 1, 8, tzinfo=UTC)
CUSTOMERS = [f"c{i}" for i in range(12)]  # spread over every partition
FAR_FUTURE = "9999-12-31T23:59:59Z"


def transaction(tid: str, customer: str, at: datetime | str) -> bytes:
    stamp = at if isinstance(at, str) else at.isoformat()
    return json.dumps({"transaction_id": tid, "event_time": stamp, "customer_id": customer,
                       "terminal_id": f"t-{customer}", "amount": 10.0}).encode()


def label(tid: str, customer: str, tx_at: datetime, labeled_at: datetime | str) -> bytes:
    stamp = labeled_at if isinstance(labeled_at, str) else labeled_at.isoformat()
    return json.dumps({"transaction_id": tid, "customer_id": customer,
                       "terminal_id": f"t-{customer}", "transaction_time": tx_at.isoformat(),
                       "labeled_at": stamp, "is_fraud": True}).encode()


def produce_phase(producer: EventProducer, phase: int,
                  minutes: range) -> dict[str, tuple[str, int]]:
    """One transaction per customer per minute offset; the newest (tid, ms) per customer."""
    newest: dict[str, tuple[str, int]] = {}
    tx_headers, label_headers = headers_for(Transaction), headers_for(Label)
    for minute in minutes:
        at = START + timedelta(minutes=minute)
        for customer in CUSTOMERS:
            tid = f"p{phase}-{customer}-{minute}"
            producer.send_raw(TRANSACTIONS, customer.encode(), transaction(tid, customer, at),
                              tx_headers)
            newest[customer] = (tid, epoch_ms(at))
        # Labels of transactions an hour earlier, in event time with the stream.
        producer.send_raw(LABELS, b"c0", label(f"p{phase}-c0-{minute - 60}", "c0",
                                                at - timedelta(hours=1), at), label_headers)
    producer.flush()
    return newest


def run_worker(kafka: KafkaSettings, redis_url: str) -> tuple[kafka_engine.EngineRun,
                                                               FeatureWorker]:
    workers: list[FeatureWorker] = []
    # The hashes too: their as-of and transaction show what the store was written from.
    settings = Settings(consumer_group="quarantine", checkpoint_interval_s=3600,
                        online_layout="prefix+latest")
    result = kafka_engine.run(settings, kafka, RedisSettings(url=redis_url), max_idle_s=3,
                              install_signal_handlers=False, on_worker=workers.append)
    return result, workers[0]


def test_far_future_records_are_quarantined_and_valid_traffic_is_unaffected(
        fresh_kafka_broker: Any, fresh_redis_server: Any) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    kafka = KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=6000)
    ensure_topics(bootstrap, replication_factor=1)
    producer = EventProducer(kafka)
    tx_headers, label_headers = headers_for(Transaction), headers_for(Label)

    produce_phase(producer, 1, range(0, 180, 3))
    poison_tx = transaction("poison-tx", "c1", FAR_FUTURE)
    poison_label = label("p1-c1-0", "c1", START, FAR_FUTURE)
    producer.send_raw(TRANSACTIONS, b"c1", poison_tx, tx_headers)
    producer.send_raw(LABELS, b"c1", poison_label, label_headers)
    producer.flush()
    first, worker = run_worker(kafka, fresh_redis_server.url)
    assert worker.quarantined == 2
    assert first.late_events == 0

    # Three hours more of every customer, c1 included, after the poison: a restart
    # resumes from the checkpoint (the guard's state with it).
    newest = produce_phase(producer, 2, range(180, 360, 3))
    second, worker = run_worker(kafka, fresh_redis_server.url)
    assert second.resumed_from_checkpoint
    assert second.late_events == 0  # none of c1's partition's valid transactions
    assert worker.quarantined == 0  # the poison is not dead-lettered again

    # The poison records, as they were read, with the reason.
    for topic, value, what in ((TRANSACTIONS, poison_tx, b"9999-12-31T23:59:59"),
                               (LABELS, poison_label, b"9999-12-31T23:59:59")):
        (record,) = consume(bootstrap, dead_letter_topic(topic), 1)
        letter = DeadLetter.from_parts(dead_letter_topic(topic), record.key, record.value,
                                       record.headers)
        assert letter.value == value
        assert letter.error_type == ERROR_TYPE
        assert letter.source_topic == topic and letter.consumer_group == "quarantine"
        assert "ahead of the wall clock" in letter.reason and what.decode() in letter.reason

    # Redis follows the valid events: c1's and its terminal's hashes as of its newest one.
    client = fresh_redis_server.client()
    prefix = f"rtml:fs:{BASELINE.name}:{BASELINE.version}:"
    tid, at_ms = newest["c1"]
    for entity, entity_id in (("customer", "c1"), ("terminal", "t-c1")):
        stored = client.hgetall(f"{prefix}{entity}:{entity_id}")
        assert stored[b"_as_of_ms"] == str(at_ms).encode(), entity
        assert stored[b"_tx"] == tid.encode()

    # Watermarks: every source at its newest valid event, nowhere near 9999.
    computer = worker.computer
    last_ms = max(at for _, at in newest.values())
    assert computer.max_time_ms == last_ms
    assert computer.watermark_ms is not None and computer.watermark_ms <= last_ms
    assert all(at is not None and at <= last_ms for at in computer.source_times.values())
