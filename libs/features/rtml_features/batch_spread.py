"""Population standard deviation of many ranges of one array, vectorized and stable.

Prefix sums of ``x`` and ``x²`` would give each window's variance as
``E[x²] - E[x]²``: two large, nearly equal numbers whose difference loses
every digit when the spread is small beside the mean (ten payments of 50.00
would give a deviation of ~1e-6 instead of 0). Instead a block tree holds, for
every aligned run of ``2**k`` values, its count, mean and sum of squared
deviations (``M2``); a range is covered by O(log length) disjoint blocks,
merged with Chan et al.'s pairwise update, whose terms are all non-negative:
no cancellation, and a run of equal values has ``M2`` exactly 0.

>>> import numpy as np
>>> values = np.array([50.0, 50.0, 50.0, 2.0, 4.0, 9.0])
>>> range_stddev(values, np.array([0, 3, 3, 5]), np.array([3, 5, 6, 5])).tolist()
[0.0, 1.0, 2.943920288775949, 0.0]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class _Moments:
    """Count, mean and M2 of a group of values per query (all zero: the empty group)."""

    def __init__(self, size: int) -> None:
        self.count = np.zeros(size, dtype=np.float64)
        self.mean = np.zeros(size, dtype=np.float64)
        self.m2 = np.zeros(size, dtype=np.float64)

    def merge(self, rows: I64, count: F64, mean: F64, m2: F64, before: bool) -> None:
        """Merge a group into ``rows`` (placed ``before`` or after the accumulated one)."""
        a_count, a_mean, a_m2 = self.count[rows], self.mean[rows], self.m2[rows]
        if before:
            merged = _chan(count, mean, m2, a_count, a_mean, a_m2)
        else:
            merged = _chan(a_count, a_mean, a_m2, count, mean, m2)
        self.count[rows], self.mean[rows], self.m2[rows] = merged


def _chan(n_a: F64, mean_a: F64, m2_a: F64, n_b: F64, mean_b: F64,
          m2_b: F64) -> tuple[F64, F64, F64]:
    """Moments of group a followed by group b (either may be empty)."""
    n = n_a + n_b
    safe_n = np.where(n > 0, n, 1.0)
    delta = mean_b - mean_a
    mean = np.where(n_a == 0, mean_b, np.where(n_b == 0, mean_a, mean_a + delta * (n_b / safe_n)))
    m2 = m2_a + m2_b + np.where((n_a > 0) & (n_b > 0), delta * delta * (n_a * n_b / safe_n), 0.0)
    return n, mean, m2


def range_stddev(values: F64, lower: I64, upper: I64) -> F64:
    """Population standard deviation of ``values[lower:upper]`` per query (0 below two values)."""
    lengths = upper - lower
    result = np.zeros(len(lower), dtype=np.float64)
    longest = int(lengths.max(initial=0))
    if longest < 2:
        return result
    # levels[k]: the moments of blocks [j * 2**k, (j + 1) * 2**k), whole blocks only
    levels = [(np.ones(len(values)), values.astype(np.float64), np.zeros(len(values)))]
    while 2 ** len(levels) <= longest:
        count, mean, m2 = levels[-1]
        pairs = len(count) // 2
        levels.append(_chan(count[0:2 * pairs:2], mean[0:2 * pairs:2], m2[0:2 * pairs:2],
                            count[1:2 * pairs:2], mean[1:2 * pairs:2], m2[1:2 * pairs:2]))
    left, right = _Moments(len(lower)), _Moments(len(lower))
    low, high = lower.astype(np.int64), upper.astype(np.int64)
    for k, (count, mean, m2) in enumerate(levels):
        size = 1 << k
        rows = np.flatnonzero(((low >> k) & 1).astype(bool) & (low + size <= high))
        block = low[rows] >> k
        left.merge(rows, count[block], mean[block], m2[block], before=False)
        low[rows] += size
        rows = np.flatnonzero(((high >> k) & 1).astype(bool) & (high - size >= low))
        block = (high[rows] >> k) - 1
        right.merge(rows, count[block], mean[block], m2[block], before=True)
        high[rows] -= size
    assert bool(np.all(low == high)), "block decomposition did not cover every range"
    n, _, m2 = _chan(left.count, left.mean, left.m2, right.count, right.mean, right.m2)
    many = n >= 2
    result[many] = np.sqrt(m2[many] / n[many])
    return result
