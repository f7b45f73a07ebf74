"""Property: however the partitions of the three topics interleave, no check is premature.

Random histories (a few customers and terminals, labels arriving up to 10
days later, simultaneous events) are split over two partitions per topic,
as Kafka keys them, and handed to the monitor in a random interleaving of
the six partition streams, in random batch sizes. Each partition is in
event-time order, or out of order within the allowed lateness, so a
watermark that passed ``t`` guarantees every event at or before ``t`` has
been read. The decisions carry the batch
engine's values over the *whole* history and the markers of a complete
state: so every decision must be checked, class current, with no mismatch.
A check run before the data was in would show up as a mismatch or as class
behind.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtml_common.events import Label, Transaction
from rtml_common.kafka.consumer import Record
from rtml_consistency_monitor.config import Settings
from rtml_consistency_monitor.monitor import (
    DECISIONS_TOPIC,
    LABELS_TOPIC,
    TRANSACTIONS_TOPIC,
    ConsistencyMonitor,
)
from rtml_features.baseline import BASELINE

T0 = datetime(2018, 6, 1, tzinfo=UTC)
DAY_MS = 86_400_000

event = st.tuples(
    st.integers(0, 45 * DAY_MS),  # time
    st.integers(0, 2),  # customer
    st.integers(0, 2),  # terminal
    st.integers(1, 50_000),  # amount in cents
    st.one_of(st.none(), st.tuples(st.integers(0, 10 * DAY_MS), st.booleans())),  # label
)


def partition(key: str) -> int:
    return sum(key.encode()) % 2


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(event, min_size=5, max_size=60), order=st.randoms(use_true_random=False),
       same_time=st.booleans(), out_of_order=st.booleans())
def test_any_interleaving_checks_every_decision_only_once_its_data_is_in(
        world_of: Any, events: list[Any], order: Any, same_time: bool,
        out_of_order: bool) -> None:
    if same_time:  # many events at one millisecond: the window boundaries' hard case
        events = [(events[0][0], *rest) for _, *rest in events[: len(events) // 2]] + events
    transactions, labels = [], []
    for i, (time_ms, customer, terminal, cents, label) in enumerate(events):
        tx = Transaction(transaction_id=f"tx{i}", event_time=T0 + timedelta(milliseconds=time_ms),
                         customer_id=f"c{customer}", terminal_id=f"t{terminal}",
                         amount=cents / 100)
        transactions.append(tx)
        if label is not None:
            labels.append(Label(transaction_id=tx.transaction_id, customer_id=tx.customer_id,
                                terminal_id=tx.terminal_id, transaction_time=tx.event_time,
                                labeled_at=tx.event_time + timedelta(milliseconds=label[0]),
                                is_fraud=label[1]))
    end = T0 + timedelta(days=60)
    for key in ("c0", "c1", "c2", "tick0", "tick1"):  # a later record on every partition
        tick = Transaction(transaction_id=f"tick-{key}", event_time=end, customer_id=key,
                           terminal_id=None, amount=1.0)
        transactions.append(tick)
        labels.append(Label(transaction_id=tick.transaction_id, customer_id=key,
                            transaction_time=end, labeled_at=end, is_fraud=False))
    assert {partition(t.customer_id) for t in transactions} == {0, 1}
    world = world_of(transactions, labels)
    decided = [t.transaction_id for t in transactions if not t.transaction_id.startswith("tick")]
    served = world.served_inputs(decided)

    # Out of order within the allowed lateness: each event is delayed by up to
    # LATENESS behind its event time, so it arrives at most that far behind the newest.
    lateness = timedelta(hours=1) if out_of_order else timedelta(0)
    jitter = {id(e): lateness * order.random() for e in [*transactions, *labels]}
    streams: dict[tuple[str, int], list[Any]] = {}
    for tx in sorted(transactions, key=lambda t: t.event_time + jitter[id(t)]):
        streams.setdefault((TRANSACTIONS_TOPIC, partition(tx.customer_id)), []).append(tx)
    for lab in sorted(labels, key=lambda lab: lab.labeled_at + jitter[id(lab)]):
        streams.setdefault((LABELS_TOPIC, partition(lab.customer_id)), []).append(lab)
    for tid in sorted(decided, key=lambda t: world.by_id[t].event_time):
        decision = world.decision(tid, served[tid])
        streams.setdefault((DECISIONS_TOPIC, partition(decision.customer_id)), []).append(decision)

    monitor = ConsistencyMonitor(
        Settings(sample_rate=1.0, allowed_lateness_s=int(lateness.total_seconds()),
                 check_interval_s=0, decision_lateness_s=0),
        clock=lambda: 0.0, wall_clock=lambda: 4e9)
    monitor.set_assigned(lambda: {(topic, p) for topic in (TRANSACTIONS_TOPIC, LABELS_TOPIC,
                                                           DECISIONS_TOPIC) for p in (0, 1)})
    offsets = dict.fromkeys(streams, 0)
    while any(offsets[k] < len(v) for k, v in streams.items()):
        batch: list[Record[Any]] = []
        for _ in range(order.randint(1, 8)):
            open_streams = [k for k, v in streams.items() if offsets[k] < len(v)]
            if not open_streams:
                break
            key = order.choice(open_streams)
            batch.append(Record(key[0], key[1], offsets[key], None,
                                streams[key][offsets[key]], (), 0))
            offsets[key] += 1
        monitor.handle(batch)

    assert monitor.outcomes == {"pending": len(decided), "checked": len(decided)}
    assert not monitor.total.mismatches
    assert max(monitor.total.max_abs_diff.values()) <= 1e-9
    assert {lag for (_, lag) in monitor.total.entity_lags} == {"current"}
    assert sum(monitor.total.checked.values()) == len(decided) * len(BASELINE.names)
