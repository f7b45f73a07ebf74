"""A burst followed by silence is committed within the commit interval, not at the next record.

Before, offsets were committed only when a batch arrived after the interval had
passed, so a service that went quiet after a burst kept its whole last interval
uncommitted (consumer lag never reached zero, and a restart replayed it).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rtml_common.config import KafkaSettings
from rtml_common.events import Transaction
from rtml_common.kafka.admin import ensure_topics
from rtml_common.kafka.consumer import ConsumerLoop, Record
from rtml_common.kafka.producer import EventProducer
from rtml_localstack.testing import committed_offsets

pytestmark = pytest.mark.integration

T0 = datetime(2018, 4, 1, tzinfo=UTC)
N = 50


def produce(settings: KafkaSettings, first: int, n: int) -> None:
    with EventProducer(settings) as producer:
        for i in range(first, first + n):
            producer.send(Transaction(transaction_id=str(i), event_time=T0 + timedelta(seconds=i),
                                      customer_id="c1", terminal_id="t1", amount=1.0))


def wait_for(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_a_burst_then_silence_is_committed_while_the_loop_stays_idle(
        fresh_kafka_broker: Any) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, ["transactions", "transactions.dlq"], replication_factor=1)
    settings = KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=6000,
                             poll_timeout_s=0.1, commit_interval_s=2.0)
    handled: list[str] = []

    def handler(batch: list[Record[Transaction]]) -> None:
        handled.extend(r.value.transaction_id for r in batch)

    loop = ConsumerLoop({"transactions": Transaction}, "idle-commit-group", handler, settings)
    runner = threading.Thread(target=loop.run, daemon=True)
    runner.start()
    try:
        produce(settings, 0, N)
        assert wait_for(lambda: len(handled) == N, 30)
        assert wait_for(lambda: sum(committed_offsets(bootstrap, "idle-commit-group").values())
                        == N, 15)
        # The second burst lands within the commit interval of the first commit, so no
        # batch after it would commit it; only the idle loop can, within the interval.
        produce(settings, N, N)
        assert wait_for(lambda: len(handled) == 2 * N, 30)
        assert wait_for(lambda: sum(committed_offsets(bootstrap, "idle-commit-group").values())
                        == 2 * N, 3 * settings.commit_interval_s)
        assert runner.is_alive()  # committed by the idle loop, not by closing it
    finally:
        loop.stop()
        runner.join(timeout=20)
