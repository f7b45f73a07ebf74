"""Divergences against independent computations (scipy) and their edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from scipy.stats import entropy

from rtml_monitoring.divergence import js, kl, proportions, psi


def _smoothed(counts: np.ndarray, alpha: float) -> np.ndarray:
    c = counts.astype(float) + alpha
    return c / c.sum()


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("seed", range(5))
def test_matches_scipy(alpha: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    bins = int(rng.integers(2, 20))
    reference = rng.integers(1, 1000, size=bins)
    live = rng.integers(1, 1000, size=bins)
    p, q = _smoothed(reference, alpha), _smoothed(live, alpha)
    assert kl(reference, live, alpha) == pytest.approx(entropy(q, p), rel=1e-12)
    assert psi(reference, live, alpha) == pytest.approx(
        float(np.sum(rel_entr(q, p) + rel_entr(p, q))), rel=1e-12)
    # scipy's jensenshannon is the distance: the square root of the divergence.
    assert js(reference, live, alpha) == pytest.approx(jensenshannon(p, q) ** 2, rel=1e-9)


def test_identical_distributions_have_zero_divergence() -> None:
    counts = [10, 0, 5, 7]
    assert psi(counts, counts) == 0.0
    assert kl(counts, counts) == 0.0
    assert js(counts, counts) == pytest.approx(0.0, abs=1e-15)


def test_scale_does_not_matter_only_shape() -> None:
    expected = psi([10, 20, 30], [5, 5, 5], alpha=0)
    assert psi([1, 2, 3], [2, 2, 2], alpha=0) == pytest.approx(expected)


def test_empty_reference_bin_is_infinite_without_smoothing_and_finite_with_it() -> None:
    assert math.isinf(psi([10, 0], [5, 5], alpha=0))
    assert math.isinf(kl([10, 0], [5, 5], alpha=0))
    assert 0 < js([10, 0], [5, 5], alpha=0) <= math.log(2)
    assert math.isfinite(psi([10, 0], [5, 5]))


def test_js_is_bounded_by_ln2() -> None:
    assert js([100, 0], [0, 100], alpha=0) == pytest.approx(math.log(2))


def test_bad_input_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="bin counts differ"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match=">= 0"):
        proportions([1, -1])
    with pytest.raises(ValueError, match="all zero"):
        proportions([0, 0], alpha=0)


def test_module_examples_run() -> None:
    import doctest

    import rtml_monitoring.divergence as module

    result = doctest.testmod(module)
    assert result.attempted >= 4 and result.failed == 0
