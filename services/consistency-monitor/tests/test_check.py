"""Lag classes, the comparison and the batch re-computation, on a hand-made world."""

from __future__ import annotations

import math
from typing import Any

import pytest

from rtml_consistency_monitor.check import (
    Checker,
    Lag,
    PendingDecision,
    classify,
    difference,
    worst,
)
from rtml_consistency_monitor.history import History, StoredLabel, StoredTransaction
from rtml_consistency_monitor.sampling import EntitySampler
from rtml_features.baseline import BASELINE

CUSTOMER_FEATURES = [n for n in BASELINE.names if n.startswith("customer_")]
TERMINAL_FEATURES = [n for n in BASELINE.names if n.startswith("terminal_")]
ROW_FEATURES = ["tx_amount", "tx_during_weekend", "tx_during_night"]


@pytest.mark.parametrize(("served", "ours", "lag"), [
    ((5, 2), (5, 2), Lag.CURRENT),
    ((5.0, 2.0), (5, 2), Lag.CURRENT),
    ((4, 2), (5, 2), Lag.BEHIND),
    ((5, 1), (5, 2), Lag.BEHIND),
    ((0, 0), (5, 2), Lag.BEHIND),
    ((6, 2), (5, 2), Lag.UNEXPLAINED),
    ((5, 3), (5, 2), Lag.UNEXPLAINED),
    ((4, 3), (5, 2), Lag.UNEXPLAINED),  # fewer events but more labels: not lag
    ((None, 2), (5, 2), Lag.UNKNOWN),
    ((5, None), (5, 2), Lag.UNKNOWN),
    (("5", 2), (5, 2), Lag.UNKNOWN),
    ((True, 2), (5, 2), Lag.UNKNOWN),
    ((math.nan, 2), (5, 2), Lag.UNKNOWN),
])
def test_lag_class(served: tuple[Any, Any], ours: tuple[int, int], lag: Lag) -> None:
    assert classify(served[0], served[1], *ours) is lag


def test_worst_class_orders_unexplained_unknown_behind_current() -> None:
    assert worst([Lag.CURRENT, Lag.BEHIND]) is Lag.BEHIND
    assert worst([Lag.BEHIND, Lag.UNKNOWN]) is Lag.UNKNOWN
    assert worst([Lag.UNKNOWN, Lag.UNEXPLAINED, Lag.CURRENT]) is Lag.UNEXPLAINED
    assert worst([Lag.CURRENT]) is Lag.CURRENT


def test_difference_is_absolute_and_infinite_for_a_non_finite_served_value() -> None:
    assert difference(1.5, 2.0) == 0.5
    assert difference(2.0, 1.5) == 0.5
    assert difference(math.nan, 1.0) == math.inf
    assert difference(math.inf, 1.0) == math.inf


def filled_history(world: Any) -> History:
    history = History(lateness_ms=0)
    for i, tx in enumerate(world.transactions):
        time_ms = int(tx.event_time.timestamp() * 1000)
        history.transaction_start.observe(0, i, time_ms)
        history.add_transaction(tx.transaction_id, StoredTransaction(
            time_ms, tx.customer_id, tx.terminal_id, tx.amount))
    for i, label in enumerate(world.labels):
        history.label_start.observe(0, i, int(label.labeled_at.timestamp() * 1000))
        history.add_label(label.transaction_id, StoredLabel(
            int(label.labeled_at.timestamp() * 1000), label.is_fraud,
            int(label.transaction_time.timestamp() * 1000)))
    return history


def last_days(world: Any, n: int) -> list[str]:
    return [tx.transaction_id for tx in world.transactions[-n:]]


def pending(world: Any, inputs: dict[str, dict[str, Any]]) -> list[PendingDecision]:
    return [PendingDecision(tid, int(world.by_id[tid].event_time.timestamp() * 1000), values)
            for tid, values in inputs.items()]


def test_exact_served_values_with_right_markers_are_current_and_all_match(world: Any) -> None:
    ids = last_days(world, 60)
    served = world.served_inputs(ids)
    report = Checker(BASELINE, 1e-9).check(pending(world, served), filled_history(world),
                                           EntitySampler(1.0, "k"))
    assert report.outcomes["checked"] == 60
    assert len(report.results) == 60 * len(BASELINE.names)
    assert report.mismatches() == []
    assert set(report.entity_lags) == {("customer", "current"), ("terminal", "current")}
    assert max(r.diff for r in report.results) <= 1e-9


def test_the_label_marker_and_label_windows_see_labels_known_by_t(world: Any) -> None:
    """The world has labels known before later transactions: the counts are not all 0."""
    ids = last_days(world, 60)
    served = world.served_inputs(ids)
    assert any(v["rtml_seen_labels_terminal"] > 0 for v in served.values())
    assert any(v["terminal_id_risk_7day_window"] > 0 for v in served.values())


def test_one_perturbed_feature_is_a_mismatch_of_exactly_that_feature(world: Any) -> None:
    ids = last_days(world, 20)
    served = world.served_inputs(ids)
    target = ids[7]
    served[target]["terminal_id_risk_30day_window"] = (
        float(served[target]["terminal_id_risk_30day_window"]) + 1e-6)
    report = Checker(BASELINE, 1e-9).check(pending(world, served), filled_history(world),
                                           EntitySampler(1.0, "k"))
    [mismatch] = report.mismatches()
    assert mismatch.feature == "terminal_id_risk_30day_window"
    assert mismatch.lag is Lag.CURRENT
    assert mismatch.diff == pytest.approx(1e-6, rel=1e-3)


def test_a_state_that_missed_events_is_behind(world: Any) -> None:
    ids = last_days(world, 10)
    served = world.served_inputs(ids)
    target = ids[3]
    served[target]["rtml_seen_events_customer"] = (
        float(served[target]["rtml_seen_events_customer"]) - 1)
    served[target]["customer_id_nb_tx_30day_window"] = (
        float(served[target]["customer_id_nb_tx_30day_window"]) - 1)
    report = Checker(BASELINE, 1e-9).check(pending(world, served), filled_history(world),
                                           EntitySampler(1.0, "k"))
    assert report.lags[target] == {"customer": Lag.BEHIND, "terminal": Lag.CURRENT}
    [mismatch] = report.mismatches()
    assert (mismatch.feature, mismatch.lag) == ("customer_id_nb_tx_30day_window", Lag.BEHIND)
    row = [r for r in report.results if r.feature == "tx_amount"]
    assert sorted(r.lag for r in row).count(Lag.BEHIND) == 1  # the decision's worst class


def test_markers_absent_are_unknown_and_more_than_history_unexplained(world: Any) -> None:
    ids = last_days(world, 4)
    served = world.served_inputs(ids)
    del served[ids[0]]["rtml_seen_events_terminal"]
    served[ids[1]]["rtml_seen_labels_customer"] = (
        float(served[ids[1]]["rtml_seen_labels_customer"]) + 1)
    report = Checker(BASELINE, 1e-9).check(pending(world, served), filled_history(world),
                                           EntitySampler(1.0, "k"))
    assert report.lags[ids[0]]["terminal"] is Lag.UNKNOWN
    assert report.lags[ids[1]]["customer"] is Lag.UNEXPLAINED
    assert report.lags[ids[2]] == {"customer": Lag.CURRENT, "terminal": Lag.CURRENT}
    assert report.mismatches() == []


def test_only_the_sampled_entities_features_are_checked(world: Any) -> None:
    ids = last_days(world, 30)
    served = world.served_inputs(ids)
    sampler = EntitySampler(0.5, "k")
    report = Checker(BASELINE, 1e-9).check(pending(world, served), filled_history(world),
                                           sampler)
    for tid in ids:
        tx = world.by_id[tid]
        expected = {e for e, i in (("customer", tx.customer_id), ("terminal", tx.terminal_id))
                    if sampler.sampled(e, i)}
        assert set(report.lags.get(tid, {})) == expected
    checked = {r.feature for r in report.results}
    assert report.results and checked <= set(BASELINE.names)
    assert report.mismatches() == []


def test_degraded_decision_features_are_unserved_not_compared(world: Any) -> None:
    ids = last_days(world, 2)
    served = world.served_inputs(ids)
    for name in CUSTOMER_FEATURES + TERMINAL_FEATURES:
        served[ids[0]].pop(name)
    report = Checker(BASELINE, 1e-9).check(pending(world, served), filled_history(world),
                                           EntitySampler(1.0, "k"))
    assert report.unserved == {name: 1 for name in CUSTOMER_FEATURES + TERMINAL_FEATURES}
    assert len(report.results) == len(BASELINE.names) + len(ROW_FEATURES)


def test_incomplete_history_and_missing_transaction_are_counted_not_compared(
        world: Any) -> None:
    ids = last_days(world, 3)
    served = world.served_inputs(ids)
    history = filled_history(world)
    history.evict_through(int(world.by_id[ids[0]].event_time.timestamp() * 1000) - 86_400_000)
    decisions = pending(world, served)
    decisions.append(PendingDecision("never-published", decisions[0].event_ms, {}))
    report = Checker(BASELINE, 1e-9).check(decisions, history, EntitySampler(1.0, "k"))
    assert report.outcomes == {"incomplete": 3, "no_transaction": 1}
    assert report.results == []


def test_history_keeps_the_first_known_label() -> None:
    history = History(0)
    history.add_label("t", StoredLabel(5_000, True, 1_000))
    history.add_label("t", StoredLabel(9_000, False, 1_000))
    history.add_label("t", StoredLabel(5_000, False, 1_000))  # tie: the first read stays
    assert history.labels["t"] == StoredLabel(5_000, True, 1_000)
    history.add_label("t", StoredLabel(3_000, False, 1_000))  # an earlier one arrives late
    assert history.labels["t"] == StoredLabel(3_000, False, 1_000)
