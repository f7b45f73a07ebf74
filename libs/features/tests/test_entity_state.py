"""EntityState's ordering and duplicate rules, which window results and recovery rely on."""

from __future__ import annotations

import random

from rtml_features.online import NEVER, EntityState


def _events(state: EntityState) -> list[tuple[int, str]]:
    return list(zip(state.times, state.tids, strict=True))


def test_events_stay_sorted_by_time_then_id_whatever_the_arrival_order() -> None:
    rnd = random.Random(7)
    events = [(rnd.randrange(20), f"tx-{i:03d}") for i in range(300)]  # many equal times
    arrival = events[:]
    rnd.shuffle(arrival)
    state = EntityState()
    for time_ms, transaction_id in arrival:
        assert state.add_transaction(transaction_id, time_ms, 1.0)
    assert _events(state) == sorted(events)
    assert len(state) == 300


def test_a_redelivered_event_is_ignored_wherever_it_sits() -> None:
    state = EntityState()
    for transaction_id in ("b", "d", "a", "c"):
        state.add_transaction(transaction_id, 100, 1.0)
    state.add_transaction("z", 200, 5.0)
    before = (_events(state), list(state.amounts))
    for transaction_id, time_ms in (("a", 100), ("c", 100), ("d", 100), ("z", 200)):
        assert not state.add_transaction(transaction_id, time_ms, 99.0)
    assert (_events(state), list(state.amounts)) == before


def test_an_evicted_event_is_forgotten() -> None:
    state = EntityState()
    state.add_transaction("old", 10, 1.0)
    state.add_transaction("new", 50, 1.0)
    assert state.evict(before_ms=20) == 1
    assert state.position("old", 10) == -1
    assert state.add_transaction("old", 10, 1.0)  # beyond the horizon: callers refuse it first


def test_a_fraud_label_marks_its_event_among_equal_times() -> None:
    state = EntityState()
    for transaction_id in ("a", "b", "c"):
        state.add_transaction(transaction_id, 100, 1.0)
    assert state.add_label("b", 150, True, 100)
    assert list(state.fraud_known_at) == [NEVER, 150, NEVER]
    assert state.n_frauds == 1
    assert not state.add_label("b", 160, True, 100)  # the first label wins
    # A label that comes first is applied when its transaction arrives.
    assert state.add_label("e", 170, True, 100)
    state.add_transaction("e", 100, 1.0)
    assert list(state.fraud_known_at) == [NEVER, 150, NEVER, 170]
    assert state.n_frauds == 2
    # A label for a transaction this entity never saw changes no event.
    assert state.add_label("x", 180, True, 100)
    assert state.n_frauds == 2
