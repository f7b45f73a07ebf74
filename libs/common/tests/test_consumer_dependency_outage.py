"""A dependency's outage against a real broker: the loop waits, never dead-letters.

A handler error that means "Redis (or another dependency) is unavailable" is
not a property of the record: the batch is retried without a bound, its
offsets are committed only once it succeeded, and a stop during the wait
leaves it uncommitted for the next run. Bad records are still dead-lettered.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from rtml_common.config import KafkaSettings
from rtml_common.dependency import DependencyUnavailable
from rtml_common.events import Transaction
from rtml_common.kafka.admin import ensure_topics
from rtml_common.kafka.consumer import ConsumerLoop, Record
from rtml_common.kafka.dead_letter import DeadLetter
from rtml_common.kafka.producer import EventProducer
from rtml_common.serde import headers_for
from rtml_localstack.testing import committed_offsets as committed
from rtml_localstack.testing import consume

pytestmark = pytest.mark.integration

T0 = datetime(2018, 4, 1, tzinfo=UTC)
N = 20
#: Every record has this key: one partition, so the dead-letter topic's order is the input's.
KEY = "c1"
SENTINEL = b"{not json"


def settings_for(bootstrap: str, **overrides: Any) -> KafkaSettings:
    fields: dict[str, Any] = {
        "bootstrap_servers": bootstrap, "session_timeout_ms": 6000, "poll_timeout_s": 0.2,
        "retry_backoff_s": 0.01, "dependency_backoff_max_s": 0.05, "max_retries": 1,
    }
    fields.update(overrides)
    return KafkaSettings(**fields)


def produce(settings: KafkaSettings, sentinel: bool = True) -> None:
    """N valid transactions, then (if ``sentinel``) one undecodable record after them."""
    with EventProducer(settings) as producer:
        for i in range(N):
            producer.send(Transaction(transaction_id=str(i), event_time=T0 + timedelta(seconds=i),
                                      customer_id=KEY, terminal_id="t1", amount=float(i)))
        if sentinel:
            producer.send_raw("transactions", KEY.encode(), SENTINEL, headers_for(Transaction))


def first_dead_letter(bootstrap: str) -> DeadLetter:
    [record] = consume(bootstrap, "transactions.dlq", 1, timeout_s=20)
    return DeadLetter.from_parts(record.topic, record.key, record.value, record.headers)


def test_an_outage_is_waited_out_without_a_bound_and_committed_after_success(
        fresh_kafka_broker: Any) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, ["transactions", "transactions.dlq"], replication_factor=1)
    settings = settings_for(bootstrap)
    produce(settings)
    # Far more failures than max_retries=1 allows a bad record, every kind of outage.
    outage: list[Exception] = [
        redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        ConnectionRefusedError(111, "Connection refused"), ConnectionResetError(),
        TimeoutError("timed out"), redis.TimeoutError("Timeout reading from socket"),
        DependencyUnavailable("decision log"),
    ] * 2
    failures = len(outage)
    handled: list[str] = []

    def handler(batch: list[Record[Transaction]]) -> None:
        if outage:
            raise outage.pop(0)
        handled.extend(r.value.transaction_id for r in batch)

    loop = ConsumerLoop({"transactions": Transaction}, "outage-group", handler, settings)
    loop.run(max_idle_s=1.5)

    assert handled == [str(i) for i in range(N)]
    assert (loop.stats.dependency_waits, loop.stats.retries) == (failures, 0)
    assert (loop.dependency.outages, loop.dependency.waiting) == (1, False)
    # Only the undecodable record was dead-lettered: it is the first (and only) dead letter
    # of the partition every valid record shares.
    assert loop.stats.dead_lettered == 1
    dead = first_dead_letter(bootstrap)
    assert (dead.value, dead.error_type) == (SENTINEL, "DecodeError")
    [(partition, offset)] = committed(bootstrap, "outage-group").items()
    assert offset == N + 1  # past every valid record and the sentinel
    assert partition == dead.source_partition


def test_a_stop_during_the_wait_commits_nothing_and_the_next_run_gets_the_batch(
        fresh_kafka_broker: Any) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, ["transactions", "transactions.dlq"], replication_factor=1)
    settings = settings_for(bootstrap, dependency_backoff_max_s=30.0)  # stop must cut a wait
    produce(settings, sentinel=False)
    attempts: list[int] = []

    def down(batch: list[Record[Transaction]]) -> None:
        attempts.append(len(batch))
        raise redis.ConnectionError("Connection refused")

    loop = ConsumerLoop({"transactions": Transaction}, "stop-group", down, settings)
    thread = threading.Thread(target=loop.run, kwargs={"max_idle_s": 120})
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(attempts) < 6:  # the backoff has reached seconds
            assert time.monotonic() < deadline and thread.is_alive(), attempts
            time.sleep(0.05)
    finally:
        loop.stop()
        thread.join(60)
    assert not thread.is_alive(), "the loop did not stop during the wait"
    assert loop.stats.handled == 0 and loop.stats.dead_lettered == 0
    assert committed(bootstrap, "stop-group") == {}

    handled: list[str] = []
    again = ConsumerLoop({"transactions": Transaction}, "stop-group",
                         lambda batch: handled.extend(r.value.transaction_id for r in batch),
                         settings)
    again.run(max_idle_s=1.5)
    assert handled == [str(i) for i in range(N)]
    assert list(committed(bootstrap, "stop-group").values()) == [N]


def test_a_bad_record_is_still_dead_lettered_after_an_outage(fresh_kafka_broker: Any) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, ["transactions", "transactions.dlq"], replication_factor=1)
    settings = settings_for(bootstrap)
    produce(settings, sentinel=False)
    outage = [redis.ConnectionError("refused")] * 3
    handled: list[str] = []

    def handler(batch: list[Record[Transaction]]) -> None:
        if outage:
            raise outage.pop(0)
        if any(r.value.transaction_id == "13" for r in batch):
            raise ValueError("transaction 13 refused by the store")
        handled.extend(r.value.transaction_id for r in batch)

    loop = ConsumerLoop({"transactions": Transaction}, "mixed-group", handler, settings)
    loop.run(max_idle_s=1.5)

    assert sorted(handled, key=int) == [str(i) for i in range(N) if i != 13]
    assert loop.stats.dead_lettered == 1 and loop.stats.dependency_waits == 3
    dead = first_dead_letter(bootstrap)
    assert (dead.error_type, dead.source_offset) == ("ValueError", 13)
    assert dead.attempts == 2  # max_retries=1: the outage's attempts are not counted


def test_an_idle_hook_meeting_an_outage_waits_instead_of_crashing_the_loop(
        fresh_kafka_broker: Any) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, ["transactions", "transactions.dlq"], replication_factor=1)
    settings = settings_for(bootstrap)
    produce(settings, sentinel=False)
    outage = [redis.ConnectionError("refused")] * 4
    saved: list[int] = []

    def checkpoint_when_idle() -> None:
        if outage:
            raise outage.pop(0)
        saved.append(1)

    handled: list[Record[Transaction]] = []
    loop = ConsumerLoop({"transactions": Transaction}, "idle-group", handled.extend, settings,
                        on_idle=checkpoint_when_idle)
    loop.run(max_idle_s=1.5)

    assert len(handled) == N and saved
    assert (loop.dependency.total_attempts, loop.dependency.outages) == (4, 1)
