"""How well a model's scores mean probabilities: Brier score, reliability curve, ECE.

Rules compare scores with fixed thresholds, so a score of 0.3 should mean about
three in ten such payments are fraud. The report compares the raw scores and
the calibrated ones on the *test* period (the calibration map was fitted on
validation weeks), bin by bin. Bins are fixed, finer near 0, where almost all
scores of a 0.7 %-fraud stream fall; equal-width bins would put nearly every
payment in the first one.

>>> import numpy as np
>>> bins = reliability(np.array([0.0011, 0.0015, 0.6, 0.7]), np.array([0, 0, 1, 0]))
>>> [(b.n, round(b.fraud_rate, 2)) for b in bins]
[(2, 0.0), (2, 0.5)]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

#: Reliability bin edges (the last bin includes 1.0).
EDGES: tuple[float, ...] = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass(frozen=True)
class ReliabilityBin:
    """Scores in ``[low, high)``: how many, their mean, and the observed fraud rate."""

    low: float
    high: float
    n: int
    mean_score: float
    fraud_rate: float


def reliability(scores: npt.ArrayLike, labels: npt.ArrayLike,
                edges: tuple[float, ...] = EDGES) -> tuple[ReliabilityBin, ...]:
    """Non-empty reliability bins of ``scores`` against 0/1 ``labels``."""
    values = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(labels, dtype=np.float64)
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    bins = []
    for i in range(len(edges) - 1):
        members = index == i
        n = int(members.sum())
        if n:
            bins.append(ReliabilityBin(edges[i], edges[i + 1], n, float(values[members].mean()),
                                       float(truth[members].mean())))
    return tuple(bins)


def expected_calibration_error(bins: tuple[ReliabilityBin, ...]) -> float:
    """Mean |observed rate - mean score| over bins, weighted by their sizes."""
    total = sum(b.n for b in bins)
    return sum(b.n * abs(b.fraud_rate - b.mean_score) for b in bins) / total if total else 0.0


def brier(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Mean squared difference between score and outcome (lower is better)."""
    values = np.asarray(scores, dtype=np.float64)
    return float(np.mean((values - np.asarray(labels, dtype=np.float64)) ** 2))


@dataclass(frozen=True)
class CalibrationReport:
    """The calibration map fitted, where, and raw vs calibrated scores on the test period."""

    #: ``platt``, ``isotonic``, or ``none`` when ``auto`` kept the raw scores.
    method: str
    points: int
    #: Why this map (or none) was kept.
    reason: str
    fitted_on: str
    fit_rows: int
    brier_raw: float
    brier: float
    ece_raw: float
    ece: float
    bins_raw: tuple[ReliabilityBin, ...]
    bins: tuple[ReliabilityBin, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibration_report(method: str, points: int, reason: str, fitted_on: str, fit_rows: int,
                       raw: npt.ArrayLike, calibrated: npt.ArrayLike,
                       labels: npt.ArrayLike) -> CalibrationReport:
    """Compare ``raw`` and ``calibrated`` test scores against the test ``labels``."""
    bins_raw, bins = reliability(raw, labels), reliability(calibrated, labels)
    return CalibrationReport(
        method=method, points=points, reason=reason, fitted_on=fitted_on, fit_rows=fit_rows,
        brier_raw=brier(raw, labels), brier=brier(calibrated, labels),
        ece_raw=expected_calibration_error(bins_raw), ece=expected_calibration_error(bins),
        bins_raw=bins_raw, bins=bins)
