"""The "previous" event of each window: newest other event in (event time, event id) order.

``last`` and ``time_since_previous`` read the newest event of the window other
than the current one, ties in time broken by the event id (definitions'
docstring). The engine's events are sorted by ``(entity, time)`` only, so
this module supplies the tie order: a permutation of the sorted positions
that orders each run of equal keys by id. A window's bounds always fall
between runs (they are found by time), so its newest event in that order is
``tie[upper - 1]``; if that is the current event itself (same id), the
previous one is ``tie[upper - 2]``, when still inside the window.

Ids are compared as strings (the schema's id field is one); only the runs of
simultaneous events are converted, so integer-id frames stay cheap.

>>> import numpy as np
>>> keys = np.array([5, 5, 5, 9])
>>> ids = np.array(["b", "c", "a", "d"], dtype=object)
>>> tie = tie_order(keys, ids)
>>> tie.tolist()
[2, 0, 1, 3]
>>> previous_positions(tie, ids_equal=lambda pos: ids[pos] == "c",
...                    lower=np.array([0, 3, 0]), upper=np.array([3, 4, 0])).tolist()
[0, 3, -1]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


def tie_order(keys: I64, ids: npt.NDArray[np.object_] | npt.NDArray[np.generic]) -> I64:
    """Positions of sorted ``keys`` reordered by ``str(id)`` within runs of equal keys."""
    order = np.arange(len(keys), dtype=np.int64)
    if len(keys) < 2:
        return order
    tied = np.zeros(len(keys), dtype=bool)
    equal = keys[1:] == keys[:-1]
    tied[1:] |= equal
    tied[:-1] |= equal
    positions = np.flatnonzero(tied)
    if not len(positions):
        return order
    names = np.array([str(value) for value in ids[positions]], dtype=object)
    # Sorting the tied positions by (key, id) keeps each run in its own slots.
    ranks = np.argsort(names, kind="stable")  # id order among the tied
    id_rank = np.empty(len(positions), dtype=np.int64)
    id_rank[ranks] = np.arange(len(positions))
    within = np.lexsort((id_rank, keys[positions]))
    order[positions] = positions[within]
    return order


def previous_positions(tie: I64, ids_equal: Callable[[I64], Bools], lower: I64,
                       upper: I64) -> I64:
    """Sorted position of each window's previous event (-1 when there is none).

    ``ids_equal(positions)`` says, per query, whether the event at ``positions``
    is the query's own event (the current one, excluded).
    """
    newest = np.where(upper > lower, tie[np.maximum(upper - 1, 0)], -1)
    own = (newest >= 0) & ids_equal(np.maximum(newest, 0))
    second = upper - 2
    fallback = np.where(second >= lower, tie[np.maximum(second, 0)], -1)
    return np.where(own, fallback, newest)
