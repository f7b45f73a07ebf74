"""A million simulated events through the service's detector: silent when stationary, loud on drift.

The data is the platform's own: the simulator, then the batch feature engine
training uses, then a fixed score function (see ``conftest.score``). The
reference is four weeks after the 30-day (+7-day label delay) feature warm-up;
every later row is replayed, in event-time order and in batches, through the
detector built exactly as the service builds it from default settings.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pandas as pd
import pytest

from rtml_drift_monitor.config import Settings
from rtml_drift_monitor.detector import DriftDetector, Outcome
from rtml_drift_monitor.monitor import build_detector, retrain_planner
from rtml_drift_monitor.reference import ChampionReference
from rtml_simulator.config import CardTesting, DistributionShift, SimulationConfig

pytestmark = pytest.mark.slow

BATCH = 5_000
STATIONARY = SimulationConfig(n_days=175, seed=11)
#: Drift from day 70 of a shorter run (reference days 37-64, replay from day 65).
DRIFT_DAY = 70
DRIFTS = {
    "card-testing": SimulationConfig(
        n_days=DRIFT_DAY + 3, seed=11,
        card_testing=CardTesting(start_day=DRIFT_DAY, cards_per_day=500)),
    "amount-shift": SimulationConfig(
        n_days=DRIFT_DAY + 3, seed=11,
        shift=DistributionShift(start_day=DRIFT_DAY, amount_scale=1.6)),
}


def replay(detector: DriftDetector, data: object) -> Outcome:
    """Feed features and scores batch by batch, as the service's handler would."""
    outcome = Outcome()
    times, features, scores = data.times_ms, data.features, data.scores  # type: ignore[attr-defined]
    for start in range(0, len(times), BATCH):
        end = start + BATCH
        outcome.extend(detector.observe_features(times[start:end], features[start:end]))
        outcome.extend(detector.observe_scores(times[start:end], scores[start:end]))
    return outcome


def detector_for(data: object) -> DriftDetector:
    settings = Settings()
    champion = ChampionReference("fraud-detector", "1", "sim",
                                 data.reference)  # type: ignore[attr-defined]
    return build_detector(settings, champion, retrain_planner(settings))


def test_a_stationary_replay_of_a_million_events_raises_no_alert(
        replay_of: Callable[[SimulationConfig], object]) -> None:
    data = replay_of(STATIONARY)
    assert len(data) >= 1_000_000  # type: ignore[arg-type]
    detector = detector_for(data)
    outcome = replay(detector, data)
    evaluated = [e for e in outcome.evaluations if e.skip is None]
    kinds = {(e.window.kind.value, "score" in e.measures) for e in evaluated}
    assert kinds == {("tumbling", False), ("tumbling", True), ("sliding", False),
                     ("sliding", True)}
    assert len(evaluated) >= 2 * 2 * 100  # ~108 days: tumbling + sliding, features + score
    worst: dict[tuple[str, str], float] = {}
    for evaluation in evaluated:
        for subject, measure in evaluation.measures.items():
            key = (evaluation.window.kind.value, subject)
            worst[key] = max(worst.get(key, 0.0), measure.psi)
    alerted = {key: v for key, v in worst.items() if key != ("tumbling", "tx_during_weekend")}
    top = sorted(alerted.items(), key=lambda kv: -kv[1])[:5]
    print(f"\n{len(data):,} events, {len(evaluated)} windows evaluated; "  # type: ignore[arg-type]
          f"max PSI (alerted subjects): " + ", ".join(f"{k[1]} ({k[0]}) {v:.4f}" for k, v in top)
          + f"; weekend flag on 1-day windows (not alerted): "
          f"{worst[('tumbling', 'tx_during_weekend')]:.2f}")
    assert outcome.alerts == []
    assert outcome.retrain_requests == []
    assert max(alerted.values()) < Settings().psi_threshold / 5  # far from the threshold
    assert detector.features.late == 0


@pytest.mark.parametrize("drift", sorted(DRIFTS))
def test_a_drift_is_alerted_in_the_first_window_after_the_change(
        replay_of: Callable[[SimulationConfig], object], drift: str) -> None:
    config = DRIFTS[drift]
    data = replay_of(config)
    outcome = replay(detector_for(data), data)
    assert outcome.alerts, f"{drift}: no alert"
    change = pd.Timestamp(config.start_date, tz="UTC") + timedelta(days=DRIFT_DAY)
    first_end = min(a.window_end for a in outcome.alerts)
    first = [a for a in outcome.alerts if a.window_end == first_end]
    subjects = sorted({a.subject for a in first})
    print(f"\n{drift}: alerted in the window ending {first_end}: "
          + ", ".join(f"{a.subject} PSI {a.value:.3f} "
                      f"({(a.window_end - a.window_start).days}-day)" for a in first))
    # No alert before the change; the first one in the day the change starts.
    assert all(a.window_end > change for a in outcome.alerts)
    assert first_end == change + timedelta(days=1)
    assert "tx_amount" in subjects
    # One request for that window end (the cooldown holds back a second one); it lists the
    # alerts of the windows that closed together (features and score close separately).
    (request,) = [r for r in outcome.retrain_requests if r.data_end == first_end]
    assert request.alert_ids and set(request.alert_ids) <= {a.alert_id for a in first}
