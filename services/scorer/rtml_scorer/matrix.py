"""Feature vectors (name -> value dicts) to the row matrix a model expects.

Models take rows in their own ``feature_names`` order; events carry a dict.
The fast path pulls every row's values with one C-level ``itemgetter`` call
and builds the float64 matrix with ``np.fromiter`` (no per-value Python
loop). Only when a key is missing does the slow path look row by row, so a
bad vector costs time only when there is one, and the caller learns exactly
which rows lack which features (a dead-letter reason, not a crash).

>>> m, bad = build_matrix([{"a": 1.0, "b": 2.0}, {"a": 3.0}], ("b", "a"))
>>> m.tolist(), bad
([[2.0, 1.0]], {1: ['b']})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from operator import itemgetter

import numpy as np

from rtml_models.base import F64


def build_matrix(vectors: Sequence[Mapping[str, float]], names: Sequence[str]
                 ) -> tuple[F64, dict[int, list[str]]]:
    """``(matrix of the complete rows, {row index: missing names})``.

    The matrix holds only the rows with every feature, in input order.
    """
    width = len(names)
    getter = itemgetter(*names)
    try:
        if width == 1:
            values = np.fromiter(map(getter, vectors), dtype=np.float64, count=len(vectors))
        else:
            values = np.fromiter(chain.from_iterable(map(getter, vectors)), dtype=np.float64,
                                 count=len(vectors) * width)
        return values.reshape(len(vectors), width), {}
    except KeyError:
        pass
    bad: dict[int, list[str]] = {}
    good: list[Mapping[str, float]] = []
    for index, vector in enumerate(vectors):
        missing = [name for name in names if name not in vector]
        if missing:
            bad[index] = missing
        else:
            good.append(vector)
    matrix, _ = build_matrix(good, names) if good else (np.empty((0, width)), {})
    return matrix, bad
