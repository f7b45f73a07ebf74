"""Exact distinct counts over sliding windows, as intervals the batch engine sums.

A window ``(t - n, t]`` holds a value once for each distinct value among its
events, so it is enough to count, for each value, its *newest* occurrence at
or before ``t``: event ``i`` (key ``k_i`` in the engine's sorted
``entity << bits | time`` keys) is that occurrence for every query key ``q``
with ``k_i <= q < next_i`` (``next_i``: the key of the value's next occurrence
in the entity, in sorted order), and it lies in the window while
``q < k_i + n``. So each event contributes 1 to the queries in
``[k_i, min(k_i + n, next_i))``, and a window's distinct count is the number
of such intervals containing its key: the same "started minus ended" count
the engine already uses for label-delayed sums, two sorts and binary searches
instead of a set per row. Simultaneous occurrences of a value share a key:
all but the last in sorted order get an empty interval, so the value counts
once. Events without the value (an optional field absent) get no interval.

>>> import numpy as np
>>> keys = np.array([0, 1, 2, 10])          # one entity, times 0, 1, 2, 10
>>> codes = np.array([7, 8, 7, -1])         # values: a, b, a, absent
>>> starts, ends = distinct_intervals(keys, codes, window=5, bits=38)
>>> list(zip(starts.tolist(), ends.tolist()))
[(0, 2), (1, 6), (2, 7)]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


def distinct_intervals(keys: I64, value_codes: I64, window: int,
                       bits: int) -> tuple[I64, I64]:
    """``[start, end)`` key intervals, one per event holding a value (code >= 0).

    ``keys`` are sorted ``entity << bits | time``; ``value_codes`` are aligned with
    them. Intervals come in ``keys`` order (starts sorted); some may be empty.
    """
    present = np.flatnonzero(value_codes >= 0)
    starts = keys[present]
    ends = starts + window
    if len(present) < 2:
        return starts, ends
    # Occurrences of one (entity, value) become neighbours, in key order (a stable sort
    # of one combined int64: entity codes < 2**(63 - bits), value codes < len(keys)).
    group = (starts >> bits) * (int(value_codes.max()) + 1) + value_codes[present]
    order = np.argsort(group, kind="stable")
    same = group[order[1:]] == group[order[:-1]]
    has_next = order[:-1][same]
    ends[has_next] = np.minimum(ends[has_next], starts[order[1:][same]])
    return starts, ends
