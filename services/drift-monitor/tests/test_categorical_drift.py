"""Categorical features drift on their category frequencies, measured by Jensen-Shannon.

A category-code feature (``RowKind.CATEGORY_CODE``) is binned per declared category
(plus "absent") in the training reference, so a category the training data never saw
has its own bin; the detector alerts on the JS divergence of the frequencies (bounded
by ln 2) against ``Thresholds.categorical``, while numeric features keep PSI.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from rtml_common.events import DriftMetric
from rtml_drift_monitor.alerts import (
    DEFAULT_JS_THRESHOLD,
    HysteresisRule,
    RetrainPlanner,
    Thresholds,
)
from rtml_drift_monitor.detector import DriftDetector, Outcome
from rtml_drift_monitor.windows import WindowKind, WindowSpec
from rtml_monitoring.divergence import js
from rtml_monitoring.reference import (
    ReferenceDistributions,
    build_reference,
    describe_categorical,
)

DAY = 86_400_000
START_DAY = 17_700
PER_DAY = 1_500
CHANNELS = ("pos", "web", "app")
#: Training: pos 60 %, web 35 %, absent 5 %, app never (a new app launches later).
TRAINING_MIX = {-1: 0.05, 0: 0.60, 1: 0.35, 2: 0.0}


def frame(rows: int, seed: int, mix: dict[int, float]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    codes = rng.choice(list(mix), size=rows, p=list(mix.values())).astype(float)
    return pd.DataFrame({"tx_amount": rng.gamma(2.0, 25.0, rows), "tx_channel": codes})


def reference() -> ReferenceDistributions:
    return build_reference(frame(50_000, 1, TRAINING_MIX), ["tx_amount", "tx_channel"],
                           categorical={"tx_channel": CHANNELS})


def detector(thresholds: Thresholds | None = None) -> DriftDetector:
    return DriftDetector(reference(), "fraud-detector", "3", WindowSpec(DAY, 0, 0, 500),
                         thresholds or Thresholds(0.2), HysteresisRule(),
                         RetrainPlanner(True, DAY, 21 * DAY),
                         now=lambda: datetime(2030, 1, 1, tzinfo=UTC))


def run_days(det: DriftDetector, mixes: list[dict[int, float]]) -> Outcome:
    outcome = Outcome()
    for day, mix in enumerate([*mixes, TRAINING_MIX]):
        rows = PER_DAY if day < len(mixes) else 1  # one event of the next day closes the last
        rng = np.random.default_rng(1000 + day)
        times: npt.NDArray[np.int64] = np.sort(
            (START_DAY + day) * DAY + rng.integers(0, DAY, rows)).astype(np.int64)
        outcome.extend(det.observe_features(times, frame(rows, 2000 + day, mix).to_numpy()))
    return outcome


def test_the_reference_bins_a_category_code_per_declared_category() -> None:
    channel = reference().features["tx_channel"]
    assert channel.binning == "categorical" and channel.categories == CHANNELS
    assert channel.values == (-1.0, 0.0, 1.0, 2.0)
    assert channel.counts[3] == 0  # "app": declared, never seen in training, its own bin
    assert channel.histogram([2.0, 2.0, 0.0]).tolist() == [0, 1, 0, 2]
    assert reference().features["tx_amount"].binning == "quantile"
    again = ReferenceDistributions.from_json(reference().to_json()).features["tx_channel"]
    assert again == channel


def test_codes_outside_the_declared_categories_are_refused() -> None:
    with pytest.raises(ValueError, match=r"integers in -1\.\.2"):
        describe_categorical([0.0, 3.0], CHANNELS)
    with pytest.raises(ValueError, match=r"integers in -1\.\.2"):
        describe_categorical([0.5], CHANNELS)


def test_a_stationary_category_mix_never_alerts() -> None:
    outcome = run_days(detector(), [TRAINING_MIX] * 30)
    measures = [e.measures["tx_channel"] for e in outcome.evaluations if e.skip is None]
    assert len(measures) == 29 and not outcome.alerts  # the first window is partial
    assert all(m.metric is DriftMetric.JS for m in measures)
    assert max(m.js for m in measures) < DEFAULT_JS_THRESHOLD / 5


def test_a_new_category_taking_traffic_alerts_on_js_not_psi() -> None:
    launched = {-1: 0.05, 0: 0.45, 1: 0.25, 2: 0.25}  # the app takes a quarter of payments
    outcome = run_days(detector(), [TRAINING_MIX] * 3 + [launched] * 2)
    (alert,) = outcome.alerts
    assert alert.subject == "tx_channel" and alert.metric is DriftMetric.JS
    assert alert.window_start == datetime(2018, 6, 21, tzinfo=UTC)  # day 3, the launch
    assert alert.threshold == DEFAULT_JS_THRESHOLD
    (evaluation,) = [e for e in outcome.evaluations
                     if e.window.start_ms == (START_DAY + 3) * DAY]
    measure = evaluation.measures["tx_channel"]
    assert alert.value == measure.js == pytest.approx(js(reference().features["tx_channel"]
                                                         .counts, measure.counts))
    assert measure.js < np.log(2) < measure.psi  # PSI explodes on the unseen category
    assert "tx_channel JS" in outcome.retrain_requests[0].reason
    assert evaluation.measures["tx_amount"].metric is DriftMetric.PSI  # numbers keep PSI


def test_a_per_subject_override_is_in_the_subjects_metric() -> None:
    launched = {-1: 0.05, 0: 0.45, 1: 0.25, 2: 0.25}
    quiet = Thresholds(0.2, {"tx_channel": 0.5})  # a JS no window can reach here
    assert not run_days(detector(quiet), [launched] * 2).alerts
    off = Thresholds(0.2, {"tx_channel": None})
    assert not run_days(detector(off), [launched] * 2).alerts
    tumbling = Thresholds(0.2, categorical=0.001)
    assert tumbling.for_subject(WindowKind.TUMBLING, "tx_channel", categorical=True) == 0.001
    assert tumbling.for_subject(WindowKind.TUMBLING, "tx_amount") == 0.2
