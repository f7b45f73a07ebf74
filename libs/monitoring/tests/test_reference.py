"""Reference distributions: binning rules, out-of-range values, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rtml_monitoring.reference import ReferenceDistributions, build_reference, describe


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 5_000
    risk = np.where(rng.random(n) < 0.9, 0.0, rng.random(n))  # point mass at 0
    return pd.DataFrame({"amount": rng.gamma(2.0, 30.0, n),
                         "night": (rng.random(n) < 0.2).astype(float),
                         "count": rng.integers(0, 4, n).astype(float),
                         "risk": risk, "constant": np.ones(n)})


def test_quantile_bins_hold_a_tenth_each(frame: pd.DataFrame) -> None:
    dist = describe(frame["amount"])
    assert dist.binning == "quantile" and len(dist.edges) == 9 and len(dist.counts) == 10
    assert sum(dist.counts) == dist.n == len(frame)
    assert sum(dist.proportions) == pytest.approx(1.0)
    assert all(abs(p - 0.1) < 0.01 for p in dist.proportions)
    assert list(dist.edges) == sorted(set(dist.edges))
    assert dist.min == frame["amount"].min() and dist.mean == pytest.approx(frame["amount"].mean())


def test_few_distinct_values_get_one_bin_each(frame: pd.DataFrame) -> None:
    night = describe(frame["night"])
    assert night.binning == "distinct" and night.values == (0.0, 1.0) and night.edges == (0.5,)
    assert night.proportions[1] == pytest.approx(frame["night"].mean())
    count = describe(frame["count"])
    assert count.edges == (0.5, 1.5, 2.5) and len(count.counts) == 4
    constant = describe(frame["constant"])
    assert constant.edges == () and constant.counts == (len(frame),)
    assert constant.proportions == (1.0,)


def test_a_point_mass_keeps_one_bin(frame: pd.DataFrame) -> None:
    risk = describe(frame["risk"])
    assert risk.binning == "quantile" and risk.edges[0] == 0.0
    # Bins are closed on the right: every zero is in bin 0, nothing else is.
    assert risk.counts[0] == int((frame["risk"] == 0).sum())
    assert sum(risk.proportions) == pytest.approx(1.0)


def test_values_outside_the_training_range_are_binned(frame: pd.DataFrame) -> None:
    dist = describe(frame["amount"])
    bins = dist.bin_index([-1e9, dist.min, dist.max, 1e9])
    assert bins[0] == 0 and bins[1] == 0
    assert bins[2] == bins[3] == len(dist.edges)
    assert dist.histogram([-5.0, 1e12]).sum() == 2
    night = describe(frame["night"])
    assert list(night.bin_index([-3.0, 0.2, 0.9, 7.0])) == [0, 0, 1, 1]
    # The training values land in the bins they were counted in.
    assert tuple(dist.histogram(frame["amount"])) == dist.counts


def test_round_trip_through_json(frame: pd.DataFrame) -> None:
    scores = np.linspace(0, 1, len(frame)) ** 3
    reference = build_reference(frame, list(frame.columns), scores, feature_set="demo",
                                feature_set_version="abc", metadata={"rows": len(frame)})
    text = reference.to_json()
    data = json.loads(text)
    assert data["format_version"] == 1 and set(data["features"]) == set(frame.columns)
    loaded = ReferenceDistributions.from_json(text)
    assert loaded == reference
    assert loaded.score is not None and sum(loaded.score.proportions) == pytest.approx(1.0)
    for dist in loaded.features.values():
        assert sum(dist.proportions) == pytest.approx(1.0)


def test_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        describe([], 10)
    with pytest.raises(ValueError):
        describe([1.0, 2.0], bins=1)
    with pytest.raises(ValueError, match="format_version"):
        ReferenceDistributions.from_dict({"format_version": 99, "features": {}})
