"""The service end to end on a real broker: history, labels and decisions in, checks out.

A small hand-made history (40 days, a few customers and terminals, labels
arriving up to 12 days later, some contradicted by a later second label) is
produced to ``transactions`` and ``labels``; then ``decisions`` for its last
60 transactions whose ``inputs`` are

(a) exactly the batch engine's values with the markers of a complete state
    -> no mismatch, lag class current;
(b) the same with one feature perturbed -> one mismatch, on that feature;
(c) the markers and a customer count one lower (the state missed an event)
    -> lag class behind, its mismatch counted under behind, not current.

Every partition of both topics then receives a later record (the watermark
is a minimum over partitions) and a malformed decision must be dead-lettered.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from rtml_common.config import KafkaSettings
from rtml_common.events import Label, Transaction
from rtml_common.kafka.producer import EventProducer
from rtml_consistency_monitor import service
from rtml_consistency_monitor.config import Settings
from rtml_consistency_monitor.monitor import ConsistencyMonitor
from rtml_features.baseline import BASELINE
from rtml_localstack.testing import TEST_SESSION_TIMEOUT_MS, KafkaBroker, consume

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: Keys enough to put a record on every partition of a 4-partition topic.
TICK_KEYS = [f"tick-{k}" for k in range(40)]
PERTURBED = "terminal_id_risk_7day_window"
BEHIND = "customer_id_nb_tx_1day_window"


def ticks(world: Any) -> tuple[list[Transaction], list[Label]]:
    """A record after every decision on every partition of both topics."""
    when = world.transactions[-1].event_time + timedelta(days=5)
    txs = [Transaction(transaction_id=f"tick-tx-{k}", event_time=when, customer_id=key,
                       terminal_id=None, amount=1.0) for k, key in enumerate(TICK_KEYS)]
    labels = [Label(transaction_id=tx.transaction_id, customer_id=tx.customer_id,
                    transaction_time=tx.event_time, labeled_at=when, is_fraud=False)
              for tx in txs]
    return txs, labels


def test_served_values_are_checked_mismatches_and_lag_are_attributed(
        world: Any, kafka_broker_factory: Callable[..., KafkaBroker]) -> None:
    broker = kafka_broker_factory(create_topics=True)
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                          session_timeout_ms=TEST_SESSION_TIMEOUT_MS,
                          idempotent_producer=False, commit_interval_s=0.2)
    ids = [tx.transaction_id for tx in world.transactions[-60:]]
    served = world.served_inputs(ids)
    perturbed, behind = ids[10], ids[20]
    served[perturbed][PERTURBED] = float(served[perturbed][PERTURBED]) + 0.25
    for name in ("rtml_seen_events_customer", BEHIND):
        served[behind][name] = float(served[behind][name]) - 1
    tick_txs, tick_labels = ticks(world)

    with EventProducer(kafka) as producer:
        for event in [*world.transactions, *tick_txs, *world.labels, *tick_labels]:
            producer.send(event)
        for tid in ids:
            producer.send(world.decision(tid, served[tid]))
        producer.send_raw("decisions", b"c1", b'{"transaction_id": "broken"')

    settings = Settings(consumer_group=f"cm-{uuid.uuid4().hex[:8]}", sample_rate=1.0,
                        allowed_lateness_s=0, idle_partition_s=600, check_interval_s=0)
    holder: dict[str, ConsistencyMonitor] = {}
    result: dict[str, service.MonitorRun] = {}
    stop = threading.Event()
    ready = threading.Event()

    def on_monitor(monitor: ConsistencyMonitor) -> None:
        holder["monitor"] = monitor
        ready.set()

    def target() -> None:
        result["run"] = service.run(settings, kafka, install_signal_handlers=False, stop=stop,
                                    on_monitor=on_monitor)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert ready.wait(30)
    monitor = holder["monitor"]
    deadline = time.monotonic() + 60
    while monitor.outcomes.get("checked", 0) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.1)
    dead = consume(broker.bootstrap_servers, "decisions.dlq", 1, timeout_s=30)
    stop.set()
    thread.join(30)
    run = result["run"]

    assert monitor.outcomes == {"pending": 60, "checked": 60}
    assert run.loop.dead_lettered == 1 and dead[0].value == b'{"transaction_id": "broken"'
    totals = monitor.total
    assert sum(totals.checked.values()) == 60 * len(BASELINE.names)
    assert dict(totals.mismatches) == {(PERTURBED, "current"): 1, (BEHIND, "behind"): 1}
    assert totals.max_abs_diff[PERTURBED] == pytest.approx(0.25)
    assert totals.max_abs_diff[BEHIND] == pytest.approx(1.0)
    others = [d for name, d in totals.max_abs_diff.items() if name not in (PERTURBED, BEHIND)]
    assert max(others) <= 1e-9
    assert dict(totals.entity_lags) == {("customer", "current"): 59, ("customer", "behind"): 1,
                                        ("terminal", "current"): 60}
    assert totals.checked[("tx_amount", "behind")] == 1  # row features: the decision's class
    assert monitor.pending == 0
