"""Entity ids of a frame's rows as small integer codes, for one key field or a compound key.

The batch engine sorts events by ``(entity code, time)``; the codes must mean
exactly what :meth:`~rtml_features.definitions.Entity.id_of` means: two rows
share an entity when every key field holds the same value, and a row with any
key field absent belongs to no entity (code -1). Building the JSON ids of
``id_of`` for millions of rows would cost seconds, so a compound key is
coded one field at a time instead (each field's values factorized, the
codes combined pairwise and factorized again, so no product can overflow).

>>> import pandas as pd
>>> history = pd.DataFrame({"card": ["c1", "c2", "c1", None], "device": ["d", "d", "d", "d"]})
>>> codes = EntityCodes.of(history, ("card", "device"))
>>> codes.codes.tolist()
[0, 1, 0, -1]
>>> codes.lookup(pd.DataFrame({"card": ["c2", "c3", "c1"], "device": ["d", "d", None]})).tolist()
[1, -1, -1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class EntityCodes:
    """Codes of the history's rows, and how to code another frame's rows the same way."""

    keys: tuple[str, ...]
    codes: I64  # per history row: 0..count-1, -1 when a key field is absent
    count: int
    _fields: tuple[pd.Index, ...]  # each key field's distinct values (code = position)
    _pairs: tuple[pd.Index, ...]  # each combining step's distinct (left, right) codes

    @classmethod
    def of(cls, history: pd.DataFrame, keys: Sequence[str]) -> EntityCodes:
        fields: list[pd.Index] = []
        pairs: list[pd.Index] = []
        combined: I64 | None = None
        for key in keys:
            codes, uniques = pd.factorize(history[key], sort=False)
            codes = codes.astype(np.int64)
            fields.append(pd.Index(uniques))
            if combined is None:
                combined = codes
                continue
            combined, step = _combine(combined, codes, len(uniques))
            pairs.append(step)
        assert combined is not None
        count = len(pairs[-1]) if pairs else len(fields[0])
        return cls(tuple(keys), combined, count, tuple(fields), tuple(pairs))

    def lookup(self, frame: pd.DataFrame) -> I64:
        """The history's code of each row of ``frame`` (-1: key absent or not in history)."""
        combined: I64 | None = None
        for i, key in enumerate(self.keys):
            codes = positions_in(self._fields[i], frame[key])
            if combined is None:
                combined = codes
                continue
            present = (combined >= 0) & (codes >= 0)
            pair = combined * len(self._fields[i]) + codes
            combined = np.full(len(pair), -1, dtype=np.int64)
            combined[present] = positions_in(self._pairs[i - 1], pd.Series(pair[present]))
        assert combined is not None
        return combined


def positions_in(values: pd.Index, column: pd.Series) -> I64:
    """Position of each of ``column``'s values in ``values`` (-1: absent or not there).

    The column is factorized first and only its distinct values are looked up:
    a hash lookup of every row converts arrow-backed strings to Python objects,
    ~3x slower on a million rows of device ids.
    """
    codes, distinct = pd.factorize(column, sort=False)
    found = np.asarray(values.get_indexer(distinct), dtype=np.int64)
    return np.where(codes >= 0, found[np.maximum(codes, 0)] if len(found) else -1, -1)


def _combine(left: I64, right: I64, right_count: int) -> tuple[I64, pd.Index]:
    """Codes of (left, right) pairs; -1 when either is -1. Returns the codes and the pairs."""
    present = (left >= 0) & (right >= 0)
    pair = left * right_count + right
    codes = np.full(len(pair), -1, dtype=np.int64)
    found, uniques = pd.factorize(pair[present], sort=False)
    codes[present] = found
    return codes, pd.Index(uniques)
