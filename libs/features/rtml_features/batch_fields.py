"""A frame's numeric field as float64, checked against its declaration before any sum.

Prefix sums run over a whole entity's history, so one ``inf`` or 1e308 would
turn the windows of every later row of the entity into ``inf`` or ``nan``
(``inf - inf``). A frame holding a value outside its field's declared bounds
(the handbook's amount: ``[0, RTML_CONTRACT_MAX_AMOUNT]``), or beyond
:data:`MAX_MAGNITUDE` for an unbounded field, is refused (:class:`SpineError`,
with how many and an example) instead of computing features with it. An
optional field's absent values read its declared default (the definitions
require one for every numeric field a feature reads); booleans read 1.0 / 0.0.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from rtml_common.schema import Field

F64 = npt.NDArray[np.float64]

#: Largest magnitude of an unbounded field: sums of 2**53 such values, and the squared
#: deviations of a standard deviation, stay far from float64's overflow.
MAX_MAGNITUDE = 1e100


class SpineError(ValueError):
    """The spine or history frame lacks a column or has invalid values."""


def require_columns(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        raise SpineError(f"{what} lacks column(s) {missing}; has {list(frame.columns)}")


def numeric_values(frame: pd.DataFrame, field: Field, what: str) -> F64:
    """``frame[field]`` as float64 (absent values: the default), refused outside its bounds."""
    column = frame[field.name]
    try:
        if field.default is not None:
            values = column.to_numpy(dtype=np.float64, na_value=float(field.default))
        else:
            values = column.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SpineError(f"{what}: {field.name} column is not numeric ({exc})") from None
    low = field.minimum if field.minimum is not None else -MAX_MAGNITUDE
    high = field.maximum if field.maximum is not None else MAX_MAGNITUDE
    bad = ~((values >= low) & (values <= high))  # nan compares False both ways
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise SpineError(
            f"{what}: {int(bad.sum())} {field.name}(s) not a finite number in [{low!r}, "
            f"{high!r}] (the field's declared bounds), e.g. {values[first]!r} at row {first}")
    return values
