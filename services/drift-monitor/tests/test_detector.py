"""The detector on synthetic streams: divergences cross-checked with scipy, alerts, retraining."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from rtml_drift_monitor.alerts import HysteresisRule, RetrainPlanner, Thresholds
from rtml_drift_monitor.detector import DriftDetector, Evaluation, Outcome
from rtml_drift_monitor.windows import WindowKind, WindowSpec
from rtml_monitoring.divergence import DEFAULT_ALPHA
from rtml_monitoring.reference import ReferenceDistributions, build_reference

DAY = 86_400_000
START_DAY = 17_700  # 2018-06-18 (epoch days): day 0 below
PER_DAY = 1_500
FIXED_NOW = datetime(2030, 1, 1, tzinfo=UTC)


def frame(rows: int, seed: int, amount_scale: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "tx_amount": rng.gamma(2.0, 25.0, rows) * amount_scale,
        "count": rng.poisson(3.0, rows).astype(float),
        "flag": (rng.random(rows) < 0.2).astype(float),
    })


def reference() -> ReferenceDistributions:
    ref = frame(50_000, seed=1)
    scores = np.random.default_rng(2).beta(2.0, 8.0, 50_000)
    return build_reference(ref, list(ref.columns), scores)


def detector(planner: RetrainPlanner | None = None, rule: HysteresisRule | None = None,
             sliding_panes: int = 0,
             thresholds: Thresholds | None = None) -> DriftDetector:
    return DriftDetector(reference(), "fraud-detector", "7",
                         WindowSpec(DAY, sliding_panes, 0, 500),
                         thresholds or Thresholds(0.2), rule or HysteresisRule(),
                         planner or RetrainPlanner(True, DAY, 21 * DAY), now=lambda: FIXED_NOW)


def day_times(day: int, rows: int, seed: int) -> npt.NDArray[np.int64]:
    rng = np.random.default_rng(seed)
    return np.sort((START_DAY + day) * DAY + rng.integers(0, DAY, rows)).astype(np.int64)


def run_days(det: DriftDetector, days: int,
             scale_of: Callable[[int], float] = lambda _d: 1.0) -> Outcome:
    """Feed ``days`` days of features (amounts scaled by ``scale_of(day)``), then close them."""
    outcome = Outcome()
    for day in range(days + 1):
        rows = PER_DAY if day < days else 1  # one event of the next day closes the last one
        data = frame(rows, seed=100 + day, amount_scale=scale_of(day))
        outcome.extend(det.observe_features(day_times(day, rows, day), data.to_numpy()))
    return outcome


def evaluated(outcome: Outcome, kind: WindowKind = WindowKind.TUMBLING) -> list[Evaluation]:
    return [e for e in outcome.evaluations if e.skip is None and e.window.kind is kind]


def smoothed(counts: npt.ArrayLike) -> npt.NDArray[np.float64]:
    c = np.asarray(counts, dtype=np.float64) + DEFAULT_ALPHA
    return c / c.sum()


@pytest.mark.parametrize("scale", [1.0, 1.4, 3.0])
def test_psi_kl_js_match_scipy_on_the_monitors_own_histograms(scale: float) -> None:
    det = detector()
    det.observe_features(day_times(0, 10, 0), frame(10, 0).to_numpy())  # the partial first day
    live = frame(4_000, seed=9, amount_scale=scale)
    det.observe_features(day_times(1, len(live), 1), live.to_numpy())
    outcome = det.observe_features([(START_DAY + 2) * DAY], frame(1, 3).to_numpy())
    (window,) = evaluated(outcome)
    assert set(window.measures) == {"tx_amount", "count", "flag"}
    for name, measure in window.measures.items():
        dist = det.reference.features[name]
        values = live[name].to_numpy()
        # Bins recomputed independently: a value's bin is the number of edges below it.
        edges = np.asarray(dist.edges)
        independent = np.bincount((values[:, None] > edges[None, :]).sum(axis=1),
                                  minlength=len(edges) + 1)
        assert list(measure.counts) == independent.tolist()
        p, q = smoothed(dist.counts), smoothed(independent)
        assert measure.kl == pytest.approx(entropy(q, p), rel=1e-9, abs=1e-12)
        assert measure.psi == pytest.approx(entropy(q, p) + entropy(p, q), rel=1e-9, abs=1e-12)
        assert measure.js == pytest.approx(jensenshannon(p, q) ** 2, rel=1e-7, abs=1e-12)
        assert measure.n == len(values)
    amount_psi = window.measures["tx_amount"].psi
    assert (amount_psi < 0.02) if scale == 1.0 else (amount_psi > 0.05)


def test_scores_are_a_subject_of_their_own() -> None:
    det = detector()
    rng = np.random.default_rng(5)
    det.observe_scores(day_times(0, 5, 0), rng.beta(2, 8, 5))
    det.observe_scores(day_times(1, 3_000, 1), np.clip(rng.beta(2, 8, 3_000) + 0.3, 0, 1))
    outcome = det.observe_scores([(START_DAY + 2) * DAY], [0.1])
    (window,) = evaluated(outcome)
    assert set(window.measures) == {"score"}
    assert [a.subject for a in outcome.alerts] == ["score"]


def test_drift_alerts_in_the_first_window_after_the_change_and_requests_a_retrain() -> None:
    det = detector()
    outcome = run_days(det, 6, lambda day: 2.5 if day >= 4 else 1.0)
    psi_by_day = [e.measures["tx_amount"].psi for e in evaluated(outcome)]
    assert max(psi_by_day[:3]) < 0.05 < 0.2 < min(psi_by_day[3:])  # days 1-3, then 4-5
    (alert,) = outcome.alerts
    assert alert.subject == "tx_amount" and alert.model_version == "7"
    assert alert.window_start == datetime(2018, 6, 22, tzinfo=UTC)  # day 4
    assert alert.window_end - alert.window_start == timedelta(days=1)
    assert alert.value == pytest.approx(psi_by_day[3]) and alert.threshold == 0.2
    (request,) = outcome.retrain_requests
    assert request.alert_ids == [alert.alert_id]
    assert request.data_end == alert.window_end
    assert request.data_start == alert.window_end - timedelta(days=21)
    assert "tx_amount" in request.reason and request.model_name == "fraud-detector"


def test_a_replay_raises_the_same_alert_ids() -> None:
    first = run_days(detector(), 5, lambda day: 2.5 if day >= 3 else 1.0)
    again = run_days(detector(), 5, lambda day: 2.5 if day >= 3 else 1.0)
    assert [a.alert_id for a in first.alerts] == [a.alert_id for a in again.alerts]
    assert [r.request_id for r in first.retrain_requests] == [
        r.request_id for r in again.retrain_requests]
    assert [a.model_dump() for a in first.alerts] == [a.model_dump() for a in again.alerts]


def test_alert_clears_after_drift_ends_and_can_be_raised_again() -> None:
    det = detector(rule=HysteresisRule(raise_after=1, clear_after=2, clear_ratio=0.5),
                   planner=RetrainPlanner(True, 3 * DAY, DAY))
    drifting = {2, 6}  # day 2: raise; 3-4 stable: cleared after 2; day 6: raised again
    outcome = run_days(det, 8, lambda day: 3.0 if day in drifting else 1.0)
    windows = evaluated(outcome)
    raised = [(w.window.start_ms // DAY - START_DAY, [a.subject for a in w.raised])
              for w in windows if w.raised]
    cleared = [(w.window.start_ms // DAY - START_DAY, w.cleared) for w in windows if w.cleared]
    assert raised == [(2, ["tx_amount"]), (6, ["tx_amount"])]
    assert cleared == [(4, ["tx_amount"])]
    # The second alert came 4 days after the first request: past the 3-day cooldown.
    assert len(outcome.retrain_requests) == 2


def test_cooldown_suppresses_a_second_request_but_not_the_alert() -> None:
    det = detector(rule=HysteresisRule(raise_after=1, clear_after=1, clear_ratio=0.9),
                   planner=RetrainPlanner(True, 5 * DAY, DAY))
    outcome = run_days(det, 6, lambda day: 3.0 if day in (1, 3) else 1.0)
    assert len(outcome.alerts) == 2
    assert len(outcome.retrain_requests) == 1


def test_policy_never_alerts_without_requests() -> None:
    det = detector(planner=RetrainPlanner(False, 0, DAY))
    outcome = run_days(det, 4, lambda day: 3.0 if day >= 2 else 1.0)
    assert outcome.alerts and not outcome.retrain_requests


def test_a_subject_without_threshold_is_measured_but_never_alerted() -> None:
    det = detector(thresholds=Thresholds(0.2, {}, {"tx_amount": None}), sliding_panes=2)
    outcome = run_days(det, 6, lambda day: 3.0 if day >= 3 else 1.0)
    tumbling = evaluated(outcome, WindowKind.TUMBLING)
    assert max(w.measures["tx_amount"].psi for w in tumbling) > 0.2  # measured ...
    assert all(w.window.kind is WindowKind.SLIDING for w in outcome.evaluations if w.raised)
    # ... and alerted on the sliding window only.
    assert [a.window_end - a.window_start for a in outcome.alerts] == [timedelta(days=2)]


def test_windows_with_few_values_for_a_subject_skip_that_subject() -> None:
    det = detector()
    det.observe_features(day_times(0, 5, 0), frame(5, 0).to_numpy())
    live = frame(2_000, seed=4).to_numpy().copy()
    live[100:, 1] = np.nan  # "count" missing from most vectors: 100 values < 500
    det.observe_features(day_times(1, len(live), 1), live)
    (window,) = evaluated(det.observe_features([(START_DAY + 2) * DAY], frame(1, 3).to_numpy()))
    assert set(window.measures) == {"tx_amount", "flag"}
