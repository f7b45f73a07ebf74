"""The at-least-once consumer loop against a real Kafka-protocol broker.

Covers the foundation's promises: a malformed event lands in the dead-letter
topic with its reason while the consumer keeps going; a poison record is
isolated from its batch; transient handler failures are retried; delivery
failures surface; SIGTERM in the middle of a replay loses nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from rtml_common.config import KafkaSettings
from rtml_common.events import Label, Transaction
from rtml_common.kafka.admin import ensure_topics
from rtml_common.kafka.consumer import ConsumerLoop, Record
from rtml_common.kafka.dead_letter import DeadLetter
from rtml_common.kafka.producer import DeliveryError, EventProducer
from rtml_common.serde import DecodeError, encode, headers_for
from rtml_localstack.testing import consume

pytestmark = pytest.mark.integration

T0 = datetime(2018, 4, 1, tzinfo=UTC)
WORKER = Path(__file__).with_name("redis_recording_worker.py")


def tx(i: int, customer: str | None = None) -> Transaction:
    return Transaction(
        transaction_id=str(i), event_time=T0 + timedelta(seconds=i),
        customer_id=customer or f"c{i % 7}", terminal_id=f"t{i % 11}", amount=float(i % 90),
    )


def settings_for(bootstrap: str, **overrides: Any) -> KafkaSettings:
    fields: dict[str, Any] = {
        "bootstrap_servers": bootstrap, "session_timeout_ms": 6000,
        "poll_timeout_s": 0.2, "retry_backoff_s": 0.01,
    }
    fields.update(overrides)
    return KafkaSettings(**fields)


def run_loop(settings: KafkaSettings, handler: Any, topics: dict[str, Any] | None = None,
             max_idle_s: float = 1.5) -> ConsumerLoop:
    loop = ConsumerLoop(topics or {"transactions": Transaction}, "test-group", handler, settings)
    loop.run(max_idle_s=max_idle_s)
    return loop


def test_malformed_events_are_dead_lettered_and_the_consumer_keeps_going(
    fresh_kafka_broker: Any,
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, replication_factor=1)
    settings = settings_for(bootstrap)
    malformed = [
        (b"c1", b"{not json"),
        (b"c2", b'{"transaction_id":"x","event_time":"2018-04-01T00:00:00Z",'
                b'"customer_id":"c2","amount":-3}'),
        (b"c3", b'{"transaction_id":"y","event_time":"2018-04-01T00:00:00","customer_id":"c3",'
                b'"amount":3}'),
    ]
    with EventProducer(settings) as producer:
        for i in range(3):
            producer.send(tx(i, customer="c1"))
        for key, value in malformed:
            producer.send_raw("transactions", key, value, headers_for(Transaction))
        for i in range(3, 6):
            producer.send(tx(i, customer="c1"))

    handled: list[str] = []
    loop = run_loop(settings, lambda batch: handled.extend(r.value.transaction_id for r in batch))

    assert sorted(handled, key=int) == [str(i) for i in range(6)]
    assert loop.stats.dead_lettered == 3
    dead = [DeadLetter.from_parts(r.topic, r.key, r.value, r.headers)
            for r in consume(bootstrap, "transactions.dlq", 3, timeout_s=20)]
    by_value = {d.value: d for d in dead}
    assert set(by_value) == {value for _, value in malformed}
    assert "Invalid JSON" in by_value[b"{not json"].reason
    assert "amount: Input should be greater than or equal to 0" in by_value[malformed[1][1]].reason
    assert "timezone-aware" in by_value[malformed[2][1]].reason
    for d in dead:
        assert d.source_topic == "transactions"
        assert d.error_type == "DecodeError"
        assert d.consumer_group == "test-group"
        assert ("rtml-event-type", b"Transaction") in d.original_headers
    # The three bad records sat between good ones of the same key: offsets prove it.
    assert sorted(d.source_offset for d in dead if d.key == b"c1") == [3]


def test_poison_record_is_isolated_from_its_batch(fresh_kafka_broker: Any) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, ["transactions", "transactions.dlq"], replication_factor=1)
    settings = settings_for(bootstrap, max_retries=2)
    with EventProducer(settings) as producer:
        for i in range(20):
            producer.send(tx(i, customer="same"))
    handled: set[str] = set()

    def handler(batch: list[Record[Transaction]]) -> None:
        if any(r.value.transaction_id == "13" for r in batch):
            raise RuntimeError("feature store rejected transaction 13")
        handled.update(r.value.transaction_id for r in batch)

    loop = run_loop(settings, handler)
    assert handled == {str(i) for i in range(20)} - {"13"}
    assert loop.stats.dead_lettered == 1
    [record] = consume(bootstrap, "transactions.dlq", 1, timeout_s=20)
    dead = DeadLetter.from_parts(record.topic, record.key, record.value, record.headers)
    assert dead.error_type == "RuntimeError"
    assert "feature store rejected transaction 13" in dead.reason
    assert dead.attempts == 3
    assert Transaction.model_validate_json(dead.value or b"").transaction_id == "13"


def test_transient_failures_are_retried_without_dead_lettering(fresh_kafka_broker: Any) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, ["labels", "labels.dlq"], replication_factor=1)
    settings = settings_for(bootstrap, max_retries=3)
    label = Label(transaction_id="1", customer_id="c", transaction_time=T0,
                  labeled_at=T0 + timedelta(days=7), is_fraud=True)
    with EventProducer(settings) as producer:
        producer.send(label)
    calls: list[int] = []

    def flaky(batch: list[Record[Label]]) -> None:
        calls.append(len(batch))
        if len(calls) < 3:  # not an outage (see test_consumer_dependency_outage.py)
            raise RuntimeError("flaky handler")

    loop = run_loop(settings, flaky, topics={"labels": Label})
    assert calls == [1, 1, 1]
    assert loop.stats.retries == 2
    assert loop.stats.dead_lettered == 0
    assert loop.stats.handled == 1


def test_delivery_failure_is_raised_not_swallowed(fresh_kafka_broker: Any) -> None:
    settings = settings_for(fresh_kafka_broker.bootstrap_servers, flush_timeout_s=2.0)
    producer = EventProducer(settings)
    fresh_kafka_broker.stop()
    producer.send(tx(1))
    try:
        with pytest.raises(DeliveryError, match=r"failed|in flight"):
            producer.flush(timeout_s=5.0)
    finally:
        producer.close(flush=False)  # or it keeps reconnecting to the stopped broker


def test_sigterm_mid_replay_loses_nothing(fresh_kafka_broker: Any, redis_server: Any) -> None:
    """Stop a worker with SIGTERM half-way, restart it: every event processed exactly once."""
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, ["transactions", "transactions.dlq"], replication_factor=1)
    total = 4000
    settings = settings_for(bootstrap)
    with EventProducer(settings) as producer:
        for i in range(total):
            producer.send_raw("transactions", f"c{i % 50}".encode(), encode(tx(i)),
                              headers_for(Transaction))
    store = redis.Redis.from_url(redis_server.url)
    store.flushdb()
    env = {**os.environ, "RTML_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "RTML_KAFKA_SESSION_TIMEOUT_MS": "6000", "RTML_KAFKA_BATCH_SIZE": "50",
           "WORKER_REDIS_URL": redis_server.url, "WORKER_BATCH_DELAY_S": "0.02"}

    first = subprocess.Popen([sys.executable, str(WORKER)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while int(store.scard("processed")) < total // 4:
        assert first.poll() is None, first.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "worker made no progress"
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr.decode()[-2000:]
    after_first = int(store.scard("processed"))
    assert after_first < total, "the worker finished before SIGTERM: the test proved nothing"

    second = subprocess.run([sys.executable, str(WORKER)], env={**env, "WORKER_IDLE_S": "2"},
                            capture_output=True, timeout=120)
    assert second.returncode == 0, second.stderr.decode()[-2000:]

    processed = {m.decode() for m in store.smembers("processed")}
    assert processed == {str(i) for i in range(total)}
    counts = {int(v) for v in store.hvals("times_processed")}
    assert counts == {1}, "a graceful stop must commit exactly what it processed"


def test_range_assignment_keeps_co_partitioned_topics_together(fresh_kafka_broker: Any) -> None:
    """Two members with the eager "range" assignor own the same partitions of both topics."""
    import threading

    settings = settings_for(fresh_kafka_broker.bootstrap_servers, poll_timeout_s=0.05)
    topics = {"transactions": Transaction, "labels": Label}
    ensure_topics(settings.bootstrap_servers, list(topics), replication_factor=1)
    loops = [ConsumerLoop(topics, "range-group", lambda records: None, settings,
                          **{"partition.assignment.strategy": "range"}) for _ in range(2)]
    threads = [threading.Thread(target=loop.run, kwargs={"max_idle_s": 60}) for loop in loops]
    try:
        threads[0].start()
        deadline = time.monotonic() + 30
        while not loops[0].assigned and time.monotonic() < deadline:
            time.sleep(0.05)
        threads[1].start()
        while time.monotonic() < deadline + 30:
            owned = [set(loop.assigned) for loop in loops]
            if all(owned) and len(owned[0] | owned[1]) == 8 and not owned[0] & owned[1]:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"no settled two-member assignment: {[sorted(o) for o in owned]}")
        for own in owned:
            by_topic = {t: {p for topic, p in own if topic == t} for t in topics}
            assert by_topic["transactions"] == by_topic["labels"], sorted(own)
    finally:
        for loop in loops:
            loop.stop()
        for thread in threads:
            thread.join(30)


def test_a_topic_decoder_replaces_validation_and_its_refusals_are_dead_lettered(
    fresh_kafka_broker: Any,
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, replication_factor=1)
    settings = settings_for(bootstrap)

    def amount_only(value: bytes | None, headers: Any) -> float:
        amount = orjson.loads(value or b"{}").get("amount")
        if not isinstance(amount, float):
            raise DecodeError(f"lean: amount is {amount!r}")
        return amount

    with EventProducer(settings) as producer:
        producer.send(tx(1, customer="c1"))
        producer.send_raw("transactions", b"c1", b'{"amount": "x"}', headers_for(Transaction))
        producer.send(tx(2, customer="c1"))

    handled: list[float] = []
    loop = ConsumerLoop({"transactions": Transaction}, "decoder-group",
                        lambda batch: handled.extend(r.value for r in batch), settings,
                        decoders={"transactions": amount_only})
    loop.run(max_idle_s=1.5)

    assert handled == [1.0, 2.0]
    (dead,) = [DeadLetter.from_parts(r.topic, r.key, r.value, r.headers)
               for r in consume(bootstrap, "transactions.dlq", 1, timeout_s=20)]
    assert (dead.reason, dead.error_type, dead.value) == ("lean: amount is 'x'", "DecodeError",
                                                          b'{"amount": "x"}')


def test_decoders_must_name_consumed_topics() -> None:
    with pytest.raises(ValueError, match="labels"):
        ConsumerLoop({"transactions": Transaction}, "g", lambda batch: None,
                     KafkaSettings(bootstrap_servers="127.0.0.1:1"),
                     decoders={"labels": lambda value, headers: value})
