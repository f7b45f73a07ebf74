"""Brier score, ECE and reliability bins: what the calibration report says about scores."""

from __future__ import annotations

import numpy as np
import pytest

from rtml_training.calibration_report import (
    EDGES,
    brier,
    calibration_report,
    expected_calibration_error,
    reliability,
)


def test_bins_cover_every_score_once_including_the_ends() -> None:
    scores = np.array([0.0, 0.0005, 0.001, 0.3, 0.999, 1.0])
    bins = reliability(scores, np.zeros(6))
    assert sum(b.n for b in bins) == 6
    assert bins[0].low == 0.0 and bins[-1].high == 1.0 and bins[-1].n == 2
    assert [b.low for b in bins] == sorted(b.low for b in bins)
    assert all(b.low in EDGES for b in bins)


def test_perfectly_calibrated_scores_have_no_calibration_error() -> None:
    rng = np.random.default_rng(3)
    scores = np.repeat([0.0015, 0.03, 0.3], 20_000)
    labels = rng.random(len(scores)) < scores
    good = reliability(scores, labels)
    assert expected_calibration_error(good) < 0.005
    doubled = reliability(np.minimum(scores * 2, 1.0), labels)
    assert expected_calibration_error(doubled) > 5 * expected_calibration_error(good)


def test_brier_and_the_report_compare_raw_with_calibrated() -> None:
    labels = np.array([0, 0, 1, 1])
    assert brier(np.array([0.0, 0.0, 1.0, 1.0]), labels) == 0.0
    assert brier(np.array([0.5] * 4), labels) == pytest.approx(0.25)
    report = calibration_report("platt", 2, "asked for", "week", 4,
                                raw=np.array([0.4, 0.4, 0.6, 0.6]),
                                calibrated=np.array([0.1, 0.1, 0.9, 0.9]), labels=labels)
    assert report.brier < report.brier_raw and report.ece < report.ece_raw
    assert report.to_dict()["bins"][0]["n"] == 2
