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
#: Queries answered at a time: their accumulators stay in the CPU's cache (~2x faster
#: than sweeping million-row arrays once per level).
CHUNK = 32_768


class _Moments:
    """Count, mean (as a float and its rounding error) and M2 per query; zeros: empty."""

    def __init__(self, size: int) -> None:
        self.count = np.zeros(size, dtype=np.float64)
        self.mean = np.zeros(size, dtype=np.float64)
        self.mean_error = np.zeros(size, dtype=np.float64)
        self.m2 = np.zeros(size, dtype=np.float64)

    def merge(self, rows: I64, block: Moments, before: bool) -> None:
        """Merge a (non-empty) group into ``rows`` (``before`` or after the accumulated one)."""
        fresh = self.count[rows] == 0
        if fresh.any():  # nothing accumulated yet: the block as is
            first = rows[fresh]
            (self.count[first], self.mean[first], self.mean_error[first],
             self.m2[first]) = _take(block, np.flatnonzero(fresh))
            rows, block = rows[~fresh], _take(block, np.flatnonzero(~fresh))
        mine = (self.count[rows], self.mean[rows], self.mean_error[rows], self.m2[rows])
        merged = _merge_full(block, mine) if before else _merge_full(mine, block)
        self.count[rows], self.mean[rows], self.mean_error[rows], self.m2[rows] = merged

    @property
    def moments(self) -> Moments:
        return self.count, self.mean, self.mean_error, self.m2


#: (count, mean, mean's rounding error, M2) of groups of values.
Moments = tuple[F64, F64, F64, F64]


def _merge_full(a: Moments, b: Moments) -> Moments:
    """:func:`_chan` for two non-empty groups (no guards: the hot path)."""
    n_a, mean_a, error_a, m2_a = a
    n_b, mean_b, error_b, m2_b = b
    n = n_a + n_b
    delta = (mean_b - mean_a) + (error_b - error_a)
    step = delta * (n_b / n)
    total = mean_a + step
    back = total - mean_a
    error = error_a + ((mean_a - (total - back)) + (step - back))
    mean = total + error
    error -= mean - total
    return n, mean, error, m2_a + m2_b + delta * delta * (n_a * n_b / n)


def _chan(a: Moments, b: Moments) -> Moments:
    """Moments of group ``a`` followed by group ``b`` (either may be empty).

    The mean is kept as a double-double (``mean + mean_error``): the difference of
    two block means (``delta``) must be exact to the spread's digits even when the
    means are a million times the spread (amounts of 1e6 differing by cents).
    """
    n_a, mean_a, error_a, m2_a = a
    n_b, mean_b, error_b, m2_b = b
    n = n_a + n_b
    safe_n = np.where(n > 0, n, 1.0)
    delta = (mean_b - mean_a) + (error_b - error_a)
    step = delta * (n_b / safe_n)
    total = mean_a + step  # two-sum: total + rounding == mean_a + step exactly
    back = total - mean_a
    rounding = (mean_a - (total - back)) + (step - back)
    error = error_a + rounding
    mean = total + error  # renormalised: |error| stays below half an ulp of mean
    error = error - (mean - total)
    both = (n_a > 0) & (n_b > 0)
    mean = np.where(both, mean, np.where(n_a > 0, mean_a, mean_b))
    error = np.where(both, error, np.where(n_a > 0, error_a, error_b))
    m2 = m2_a + m2_b + np.where(both, delta * delta * (n_a * n_b / safe_n), 0.0)
    return n, mean, error, m2


def range_stddev(values: F64, lower: I64, upper: I64) -> F64:
    """Population standard deviation of ``values[lower:upper]`` per query (0 below two values)."""
    lengths = upper - lower
    result = np.zeros(len(lower), dtype=np.float64)
    longest = int(lengths.max(initial=0))
    if longest < 2:
        return result
    # levels[k]: the moments of blocks [j * 2**k, (j + 1) * 2**k), whole blocks only
    zeros = np.zeros(len(values))
    levels: list[Moments] = [(np.ones(len(values)), values.astype(np.float64), zeros, zeros)]
    while 2 ** len(levels) <= longest:
        pairs = np.arange(len(levels[-1][0]) // 2) * 2
        levels.append(_merge_full(_take(levels[-1], pairs), _take(levels[-1], pairs + 1)))
    for start in range(0, len(lower), CHUNK):
        part = slice(start, start + CHUNK)
        result[part] = _query(levels, lower[part], upper[part])
    return result


def _query(levels: list[Moments], lower: I64, upper: I64) -> F64:
    """The deviation of each range: its blocks merged from both ends inwards."""
    left, right = _Moments(len(lower)), _Moments(len(lower))
    low, high = lower.astype(np.int64), upper.astype(np.int64)
    for k, level in enumerate(levels):
        size = 1 << k
        rows = np.flatnonzero(((low >> k) & 1).astype(bool) & (low + size <= high))
        left.merge(rows, _take(level, low[rows] >> k), before=False)
        low[rows] += size
        rows = np.flatnonzero(((high >> k) & 1).astype(bool) & (high - size >= low))
        right.merge(rows, _take(level, (high[rows] >> k) - 1), before=True)
        high[rows] -= size
    assert bool(np.all(low == high)), "block decomposition did not cover every range"
    n, _, _, m2 = _chan(left.moments, right.moments)
    result = np.zeros(len(lower), dtype=np.float64)
    many = n >= 2
    result[many] = np.sqrt(m2[many] / n[many])
    return result


def _take(level: Moments, blocks: I64) -> Moments:
    count, mean, error, m2 = level
    return count[blocks], mean[blocks], error[blocks], m2[blocks]
