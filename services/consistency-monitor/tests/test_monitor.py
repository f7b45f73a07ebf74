"""The handler on fake records: readiness by both watermarks, pending cap, sampling, eviction."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from rtml_common.kafka.consumer import Record
from rtml_consistency_monitor.config import Settings
from rtml_consistency_monitor.monitor import (
    DECISIONS_TOPIC,
    LABELS_TOPIC,
    TRANSACTIONS_TOPIC,
    ConsistencyMonitor,
)
from rtml_features.baseline import BASELINE

WALL = 2e9  # 2033: every test event is in the wall clock's past


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Feed:
    """Records as the consumer loop hands them over, one partition per topic."""

    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}

    def record(self, topic: str, value: Any) -> Record[Any]:
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        return Record(topic, 0, offset, None, value, (), 0)


def monitor(**overrides: Any) -> tuple[ConsistencyMonitor, Clock]:
    clock = Clock()
    settings = Settings(**{"sample_rate": 1.0, "allowed_lateness_s": 0,
                           "check_interval_s": 0.0, **overrides})
    mon = ConsistencyMonitor(settings, clock=clock, wall_clock=lambda: WALL)
    mon.set_assigned(lambda: {(TRANSACTIONS_TOPIC, 0), (LABELS_TOPIC, 0), (DECISIONS_TOPIC, 0)})
    return mon, clock


def test_a_decision_waits_for_both_watermarks_then_matches(world: Any) -> None:
    mon, _ = monitor()
    feed = Feed()
    target = world.transactions[-40]
    served = world.served_inputs([target.transaction_id])[target.transaction_id]
    before = [tx for tx in world.transactions if tx.event_time <= target.event_time]
    labels_before = [lab for lab in world.labels if lab.labeled_at < target.event_time]
    mon.handle([feed.record(TRANSACTIONS_TOPIC, tx) for tx in before]
               + [feed.record(LABELS_TOPIC, lab) for lab in labels_before]
               + [feed.record(DECISIONS_TOPIC, world.decision(target.transaction_id, served))])
    # Transactions have reached t (not passed it: another at t may follow), labels not.
    assert mon.pending == 1 and mon.outcomes.get("checked", 0) == 0
    later_tx = next(tx for tx in world.transactions if tx.event_time > target.event_time)
    mon.handle([feed.record(TRANSACTIONS_TOPIC, later_tx)])
    assert mon.pending == 1  # labels known by t may still come
    later_label = next(lab for lab in world.labels if lab.labeled_at > target.event_time)
    mon.handle([feed.record(LABELS_TOPIC, later_label)])
    assert mon.pending == 0 and mon.outcomes["checked"] == 1
    assert sum(mon.total.checked.values()) == len(BASELINE.names)
    assert not mon.total.mismatches
    assert set(mon.total.entity_lags) == {("customer", "current"), ("terminal", "current")}


def test_transactions_watermark_not_reached_keeps_it_pending(world: Any) -> None:
    mon, _ = monitor()
    feed = Feed()
    target = world.transactions[-40]
    served = world.served_inputs([target.transaction_id])[target.transaction_id]
    earlier = [tx for tx in world.transactions if tx.event_time < target.event_time]
    mon.handle([feed.record(TRANSACTIONS_TOPIC, tx) for tx in earlier]
               + [feed.record(LABELS_TOPIC, lab) for lab in world.labels]
               + [feed.record(DECISIONS_TOPIC, world.decision(target.transaction_id, served))])
    assert mon.pending == 1
    mon.handle([feed.record(TRANSACTIONS_TOPIC, target)])
    assert mon.pending == 1  # newest = t: another transaction at t may still come
    later = next(tx for tx in world.transactions if tx.event_time > target.event_time)
    mon.handle([feed.record(TRANSACTIONS_TOPIC, later)])
    assert mon.pending == 0 and mon.outcomes["checked"] == 1 and not mon.total.mismatches


def test_pending_cap_drops_and_counts_and_duplicates_are_counted(world: Any) -> None:
    mon, _ = monitor(max_pending=3)
    feed = Feed()
    ids = [tx.transaction_id for tx in world.transactions[-5:]]
    served = world.served_inputs(ids)
    decisions = [world.decision(tid, served[tid]) for tid in ids]
    mon.handle([feed.record(DECISIONS_TOPIC, d) for d in [decisions[0], decisions[0],
                                                          *decisions[1:]]])
    assert mon.pending == 3
    assert mon.outcomes == {"pending": 3, "duplicate": 1, "dropped": 2}


def test_a_decision_redelivered_after_its_check_is_a_duplicate(world: Any) -> None:
    mon, _ = monitor()
    feed = Feed()
    target = world.transactions[-40]
    served = world.served_inputs([target.transaction_id])[target.transaction_id]
    decision = world.decision(target.transaction_id, served)
    mon.handle([feed.record(TRANSACTIONS_TOPIC, tx) for tx in world.transactions]
               + [feed.record(LABELS_TOPIC, lab) for lab in world.labels]
               + [feed.record(DECISIONS_TOPIC, decision)])
    mon.handle([feed.record(DECISIONS_TOPIC, decision)])
    assert mon.outcomes == {"pending": 1, "checked": 1, "duplicate": 1}
    assert sum(mon.total.checked.values()) == len(BASELINE.names)


def test_checks_wait_for_the_interval_unless_a_full_batch_is_pending(world: Any) -> None:
    mon, clock = monitor(check_interval_s=5.0, check_batch_size=3)
    feed = Feed()
    history = [feed.record(TRANSACTIONS_TOPIC, tx) for tx in world.transactions] + [
        feed.record(LABELS_TOPIC, lab) for lab in world.labels]
    mon.handle(history)  # the first call is due: nothing ready yet, nothing spent
    ids = [tx.transaction_id for tx in world.transactions[-60:-50]]
    served = world.served_inputs(ids)
    mon.handle([feed.record(DECISIONS_TOPIC, world.decision(ids[0], served[ids[0]]))])
    assert mon.outcomes.get("checked") == 1  # never checked before: due at once
    mon.handle([feed.record(DECISIONS_TOPIC, world.decision(ids[1], served[ids[1]]))])
    assert mon.pending == 1  # ready, but checked 0 s ago
    clock.now += 5
    mon.check_ready()  # the loop's idle hook
    assert mon.pending == 0 and mon.outcomes["checked"] == 2
    mon.handle([feed.record(DECISIONS_TOPIC, world.decision(t, served[t])) for t in ids[2:5]])
    assert mon.pending == 0 and mon.outcomes["checked"] == 5  # a full batch: at once


def test_a_failing_recomputation_is_counted_not_raised(world: Any) -> None:
    """Raising would make the consumer loop dead-letter the innocent records it holds."""
    mon, _ = monitor()
    feed = Feed()

    def broken(*_args: Any) -> Any:
        raise RuntimeError("engine bug")

    mon.checker.check = broken  # type: ignore[method-assign]
    target = world.transactions[-40]
    served = world.served_inputs([target.transaction_id])[target.transaction_id]
    mon.handle([feed.record(TRANSACTIONS_TOPIC, tx) for tx in world.transactions]
               + [feed.record(LABELS_TOPIC, lab) for lab in world.labels]
               + [feed.record(DECISIONS_TOPIC, world.decision(target.transaction_id, served))])
    assert mon.outcomes == {"pending": 1, "failed": 1} and mon.pending == 0


def test_decisions_of_unsampled_entities_are_not_kept(world: Any) -> None:
    mon, _ = monitor()
    mon = ConsistencyMonitor(Settings(sample_rate=0.0), wall_clock=lambda: WALL)
    tx = world.transactions[-1]
    served = world.served_inputs([tx.transaction_id])[tx.transaction_id]
    mon.handle([Feed().record(DECISIONS_TOPIC, world.decision(tx.transaction_id, served))])
    assert mon.outcomes == {"not_sampled": 1} and mon.pending == 0


def test_silent_labels_topic_does_not_block_checks_forever(world: Any) -> None:
    mon, clock = monitor(idle_partition_s=5)
    feed = Feed()
    target = world.transactions[-40]
    served = world.served_inputs([target.transaction_id])[target.transaction_id]
    mon.handle([feed.record(TRANSACTIONS_TOPIC, tx) for tx in world.transactions]
               + [feed.record(DECISIONS_TOPIC, world.decision(target.transaction_id, served))])
    assert mon.pending == 1  # the labels partition is assigned and has not reported
    clock.now += 6
    mon.check_ready()  # the loop's idle hook
    assert mon.pending == 0 and mon.outcomes["checked"] == 1
    # Without any label the label windows and markers differ from the served ones
    # (computed with labels): counted as mismatches / unexplained, not hidden.
    assert ("terminal", "unexplained") in mon.total.entity_lags


def test_far_future_transaction_does_not_move_the_watermark(world: Any) -> None:
    mon, _ = monitor()
    feed = Feed()
    first = world.transactions[0]
    future = first.model_copy(update={"transaction_id": "future",
                                      "event_time": first.event_time + timedelta(days=10**5)})
    mon.handle([feed.record(TRANSACTIONS_TOPIC, first), feed.record(TRANSACTIONS_TOPIC, future)])
    assert mon.transactions.value() == int(first.event_time.timestamp() * 1000)
    assert "future" not in mon.history.transactions


def test_started_mid_stream_decisions_within_a_horizon_are_incomplete(world: Any) -> None:
    """Records not from offset 0: events before the first one read were missed."""
    mon, _ = monitor()
    feed = Feed()
    feed.offsets = {TRANSACTIONS_TOPIC: 100, LABELS_TOPIC: 100}  # resumed from a commit
    first = world.transactions[0].event_time
    # Day 20: both windows reach back before the first record read. Day 34: the
    # customer's 30 days are covered, the terminal's 7 + 30 are not. Day 39: both are.
    targets = [next(tx for tx in world.transactions if tx.event_time >= first + timedelta(days=d))
               for d in (20, 34, 39)]
    ids = [tx.transaction_id for tx in targets]
    served = world.served_inputs(ids)
    mon.handle([feed.record(TRANSACTIONS_TOPIC, tx) for tx in world.transactions]
               + [feed.record(LABELS_TOPIC, lab) for lab in world.labels]
               + [feed.record(DECISIONS_TOPIC, world.decision(t, served[t])) for t in ids])
    assert mon.history.transaction_start.value == int(first.timestamp() * 1000)
    assert mon.outcomes == {"pending": 3, "incomplete": 1, "checked": 2}
    assert mon.total.entity_lags == {("customer", "current"): 2, ("terminal", "current"): 1}
    assert sum(mon.total.checked.values()) == 2 * 9 + 6  # row + customer features; + terminal
    assert not mon.total.mismatches


def test_history_is_kept_for_decisions_not_read_yet(world: Any) -> None:
    """A catch-up reads transactions far ahead of decisions: nothing they need goes."""
    mon, _ = monitor()
    feed = Feed()
    mon.handle([feed.record(TRANSACTIONS_TOPIC, tx) for tx in world.transactions]
               + [feed.record(LABELS_TOPIC, lab) for lab in world.labels])
    assert mon.eviction_watermark() is None  # the decisions partition has not reported
    assert len(mon.history.transactions) == len(world.transactions)
    ids = [tx.transaction_id for tx in world.transactions[-60:-10]]
    served = world.served_inputs(ids)
    mon.handle([feed.record(DECISIONS_TOPIC, world.decision(t, served[t])) for t in ids])
    assert mon.outcomes == {"pending": 50, "checked": 50}
    assert not mon.total.mismatches


def test_history_behind_the_horizon_is_evicted(world: Any) -> None:
    mon, _ = monitor(decision_lateness_s=0)
    feed = Feed()
    last = world.transactions[-1]
    served = world.served_inputs([last.transaction_id])
    mon.handle([feed.record(TRANSACTIONS_TOPIC, tx) for tx in world.transactions]
               + [feed.record(LABELS_TOPIC, lab) for lab in world.labels]
               + [feed.record(DECISIONS_TOPIC,
                              world.decision(last.transaction_id, served[last.transaction_id]))])
    newest = max(int(tx.event_time.timestamp() * 1000) for tx in world.transactions)
    horizon = mon.checker.max_horizon_ms
    kept = [tx.time_ms for tx in mon.history.transactions.values()]
    assert min(kept) > newest - horizon - 1 - mon._evict_step_ms
    assert len(kept) < len(world.transactions)
    assert mon.history.complete_after >= newest - horizon - 1 - mon._evict_step_ms
