"""Calibration maps: fitted like scikit-learn, applied identically one at a time and in
batches, and refused when their stored form is wrong."""

from __future__ import annotations

import doctest
import json
import math
from typing import Any

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

import rtml_models.calibration
from rtml_models import Calibration, ModelError, fit_isotonic, fit_platt
from rtml_models.calibration import MAX_POINTS


def test_docstring_examples_run() -> None:
    result = doctest.testmod(rtml_models.calibration)
    assert result.attempted > 0 and result.failed == 0


def _miscalibrated(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores that overstate risk: the true probability is score ** 3."""
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    truth = scores ** 3
    labels = (rng.random(n) < truth).astype(np.float64)
    return scores, labels, truth


def test_isotonic_fit_recovers_a_monotone_map() -> None:
    scores, labels, _ = _miscalibrated(20_000)
    cal = fit_isotonic(scores, labels)
    assert cal.method == "isotonic" and 2 <= cal.points <= MAX_POINTS
    assert all(b > a for a, b in zip(cal.x, cal.x[1:], strict=False))
    assert all(b >= a for a, b in zip(cal.y, cal.y[1:], strict=False))
    grid = np.linspace(0.05, 0.95, 19)
    np.testing.assert_allclose(cal.apply(grid), grid ** 3, atol=0.06)
    assert np.all(np.diff(cal.apply(np.linspace(-1, 2, 1000))) >= 0)


def test_isotonic_apply_equals_sklearn_predict() -> None:
    scores, labels, _ = _miscalibrated(5_000, seed=3)
    regression = IsotonicRegression(out_of_bounds="clip").fit(scores, labels)
    cal = Calibration.isotonic(regression.X_thresholds_, regression.y_thresholds_)
    probe = np.concatenate([np.random.default_rng(4).uniform(-0.5, 1.5, 10_000),
                            scores, regression.X_thresholds_])
    np.testing.assert_allclose(cal.apply(probe), regression.predict(probe), rtol=0, atol=1e-12)
    np.testing.assert_allclose(fit_isotonic(scores, labels).apply(probe),
                               regression.predict(probe), rtol=0, atol=1e-12)


def test_platt_fit_is_sane() -> None:
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 2, 20_000)
    scores = 1 / (1 + np.exp(-logits))
    # true P(fraud) = sigmoid(0.5 * logit - 1): overconfident, shifted scores
    labels = (rng.random(len(scores)) < 1 / (1 + np.exp(-(0.5 * logits - 1.0)))).astype(float)
    cal = fit_platt(scores, labels)
    assert cal.method == "platt"
    assert cal.a == pytest.approx(0.5, abs=0.05) and cal.b == pytest.approx(-1.0, abs=0.08)
    calibrated = cal.apply(scores)
    assert calibrated.mean() == pytest.approx(labels.mean(), abs=0.01)
    assert np.all(np.diff(cal.apply(np.sort(scores))) >= 0)
    assert np.all((calibrated > 0) & (calibrated < 1))


def test_platt_handles_separable_and_extreme_scores() -> None:
    scores = np.array([0.0, 0.01, 0.2, 0.8, 0.99, 1.0])
    labels = np.array([0, 0, 0, 1, 1, 1])
    cal = fit_platt(scores, labels)  # smoothed targets keep the fit finite
    assert math.isfinite(cal.a) and cal.a > 0 and math.isfinite(cal.b)
    out = cal.apply(np.array([0.0, 1.0, 0.5]))
    assert np.all(np.isfinite(out)) and out[0] < out[2] < out[1]


def test_platt_refuses_scores_that_rank_backwards() -> None:
    rng = np.random.default_rng(6)
    scores = rng.random(2000)
    labels = (rng.random(2000) < 1 - scores).astype(float)
    with pytest.raises(ModelError, match="slope a"):
        fit_platt(scores, labels)


@pytest.mark.parametrize("fit", [fit_isotonic, fit_platt])
def test_fitting_refuses_bad_training_data(fit: Any) -> None:
    with pytest.raises(ModelError, match="both classes"):
        fit([0.1, 0.2, 0.3], [0, 0, 0])
    with pytest.raises(ModelError, match="3 scores but 2 labels"):
        fit([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ModelError, match="not finite"):
        fit([0.1, float("nan"), 0.3], [0, 1, 1])
    with pytest.raises(ModelError, match="0/1"):
        fit([0.1, 0.2, 0.3], [0, 2, 1])


def _calibrations() -> list[Calibration]:
    scores, labels, _ = _miscalibrated(3_000, seed=8)
    return [fit_isotonic(scores, labels), fit_platt(scores, labels),
            Calibration.isotonic([0.5], [0.3]), Calibration.platt(2.5, -0.7, eps=1e-6)]


@pytest.mark.parametrize("cal", _calibrations(), ids=["isotonic", "platt", "one-point", "eps"])
def test_apply_and_apply_one_are_bit_equal(cal: Calibration) -> None:
    rng = np.random.default_rng(9)
    raw = np.concatenate([
        rng.random(7_000),
        rng.random(1_000).astype(np.float32).astype(np.float64),  # XGBoost's float32 scores
        rng.uniform(-1, 2, 1_000),
        rng.random(1_000) ** 20,  # near 0, where the logit is steep
        np.array(cal.x), np.nextafter(np.array(cal.x), 2.0),  # on and just past the knots
        [0.0, 1.0, 1e-300, 1 - 1e-16, -0.0, 5e-13, float("inf"), float("-inf")],
    ])
    batch = cal.apply(raw)
    one = np.array([cal.apply_one(float(v)) for v in raw])
    assert len(raw) > 10_000
    assert batch.tobytes() == one.tobytes()
    # also through a strided view and a float32 input, as callers may pass them
    assert cal.apply(np.repeat(raw, 2)[::2]).tobytes() == batch.tobytes()
    finite = np.isfinite(batch)
    assert finite.all() and np.all((batch >= 0) & (batch <= 1))


def test_nan_scores_stay_nan() -> None:
    for cal in _calibrations():
        assert math.isnan(cal.apply_one(float("nan")))
        assert np.isnan(cal.apply(np.array([0.5, np.nan])))[1]


@pytest.mark.parametrize("cal", _calibrations(), ids=["isotonic", "platt", "one-point", "eps"])
def test_dict_round_trip_is_exact(cal: Calibration) -> None:
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal
    probe = np.random.default_rng(10).random(1000)
    assert again.apply(probe).tobytes() == cal.apply(probe).tobytes()


@pytest.mark.parametrize(("data", "message"), [
    ({"method": "isotonic", "x": [0.1, 0.5, 0.5], "y": [0.0, 0.1, 0.2]},
     r"strictly increasing \(x\[2\] = 0.5 after x\[1\] = 0.5\)"),
    ({"method": "isotonic", "x": [0.1, 0.5], "y": [0.3, 0.2]},
     r"non-decreasing \(y\[1\] = 0.2 after y\[0\] = 0.3\)"),
    ({"method": "isotonic", "x": [0.1, 0.5], "y": [0.3, 1.2]}, r"in \[0, 1\], y\[1\] = 1.2"),
    ({"method": "isotonic", "x": [0.1, 0.5], "y": [-0.1, 0.2]}, r"y\[0\] = -0.1"),
    ({"method": "isotonic", "x": [0.1, float("nan")], "y": [0.0, 0.2]},
     r"x\[1\] must be finite, got nan"),
    ({"method": "isotonic", "x": [0.1, 0.2], "y": [0.0, float("inf")]},
     r"y\[1\] must be finite"),
    ({"method": "isotonic", "x": [0.1, 0.2, 0.3], "y": [0.0, 0.2]}, "x has 3 points but y has 2"),
    ({"method": "isotonic", "x": [], "y": []}, "at least one point"),
    ({"method": "isotonic", "x": [0.1]}, r"lacks \['y'\]"),
    ({"method": "isotonic", "x": "0.1", "y": [0.2]}, "x must be a list of numbers, got str"),
    ({"method": "isotonic", "x": [0.1, "0.2"], "y": [0.0, 0.2]}, r"x\[1\] must be a number"),
    ({"method": "isotonic", "x": [0.1, True], "y": [0.0, 0.2]}, r"x\[1\] must be a number"),
    ({"method": "isotonic", "x": list(range(MAX_POINTS + 1)), "y": [0.0] * (MAX_POINTS + 1)},
     f"x has {MAX_POINTS + 1} points; at most {MAX_POINTS}"),
    ({"method": "beta", "a": 1.0}, "unknown method 'beta'"),
    ({"x": [0.1], "y": [0.2]}, "unknown method None"),
    ({"method": "platt", "a": 1.0}, r"lacks \['b'\]"),
    ({"method": "platt", "a": 0.0, "b": 0.0}, "slope a must be > 0"),
    ({"method": "platt", "a": 1.0, "b": None}, "b must be a number, got NoneType"),
    ({"method": "platt", "a": 1.0, "b": 0.0, "eps": 0.5}, r"eps must be in \(0, 0.5\)"),
    ({"method": "platt", "a": 1.0, "b": 0.0, "x": [0.1]}, r"unexpected keys \['x'\]"),
    ({"method": "isotonic", "x": [0.1], "y": [0.2], "version": 2}, "version 2"),
])
def test_from_dict_refuses_bad_content(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        Calibration.from_dict(data)


def test_constructor_validates_too() -> None:
    with pytest.raises(ModelError, match="strictly increasing"):
        Calibration.isotonic([0.2, 0.1], [0.0, 1.0])
    with pytest.raises(ModelError, match="no x/y points"):
        Calibration("platt", x=(0.1,), y=(0.2,))
    with pytest.raises(ModelError, match="expected a JSON object"):
        Calibration.from_dict([1, 2])  # type: ignore[arg-type]


def test_a_calibration_is_immutable() -> None:
    cal = Calibration.isotonic([0.1, 0.9], [0.0, 1.0])
    with pytest.raises(AttributeError):
        cal.a = 2.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        cal._x[0] = 0.5
    assert hash(cal) == hash(Calibration.from_dict(cal.to_dict()))
