"""Row features of any schema's event, every row kind, as the reference computes them.

The classic :class:`~rtml_features.rows.RowFeatures` knows the handbook's three
kinds over ``amount``; this one reads any numeric field (its declared default
when absent), the event time's weekend, night, hour and weekday (UTC), a
categorical field's code (-1 when absent or undeclared) and a value's
indicator (0 when absent), with the same integer millisecond arithmetic.

>>> from datetime import UTC, datetime
>>> from rtml_features.baseline import BASELINE
>>> from rtml_features.rows import epoch_ms
>>> t = epoch_ms(datetime(2018, 4, 7, 3, 30, tzinfo=UTC))   # a Saturday, 03:30
>>> GenericRows(BASELINE).values(t, {"amount": 12.5})
{'tx_amount': 12.5, 'tx_during_weekend': 1.0, 'tx_during_night': 1.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rtml_features.definitions import FeatureSet, RowKind
from rtml_features.rows import MS_PER_DAY


class InvalidEvent(ValueError):
    """An event the computer cannot hold: no id or time, or a numeric field it reads that
    is absent without a default, not a number, or not finite (it would poison every
    window holding it). Raised before any state changes."""


def number(value: Any, name: str, default: Any) -> float:
    """A numeric field's value as a finite float (booleans 1/0, absent: ``default``)."""
    if value is None:
        value = default
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float):
        raise InvalidEvent(f"field {name!r} is {value!r}, not a number")
    result = float(value)
    if not math.isfinite(result):
        raise InvalidEvent(f"field {name!r} is {value!r}; a window holding it would not be "
                           "finite")
    return result


class GenericRows:
    """The row features of one feature set, precompiled for per-event use."""

    def __init__(self, feature_set: FeatureSet) -> None:
        schema = feature_set.schema
        self._rows: list[tuple[str, RowKind, str, Any, int, tuple[str, ...]]] = []
        for row in feature_set.row_features:
            field = row.field or "amount"
            declared = schema.field(field) if schema.has(field) else None
            default = declared.default if declared is not None else None
            categories = (declared.categories or ()) if declared is not None else ()
            extra: Any = row.value if row.kind is RowKind.EQUALS else default
            self._rows.append((row.name, row.kind, field, extra, row.night_end_hour,
                               tuple(categories)))
        self.names = [name for name, *_ in self._rows]

    def values(self, time_ms: int, event: Mapping[str, Any]) -> dict[str, float]:
        """Feature name -> value for an event at ``time_ms`` (epoch ms) with ``event``'s fields."""
        days, in_day = divmod(time_ms, MS_PER_DAY)
        weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
        hour = in_day // 3_600_000
        values: dict[str, float] = {}
        for name, kind, field, extra, night_end_hour, categories in self._rows:
            if kind is RowKind.FIELD:
                values[name] = number(event.get(field), field, extra)
            elif kind is RowKind.WEEKEND:
                values[name] = 1.0 if weekday >= 5 else 0.0
            elif kind is RowKind.NIGHT:
                values[name] = 1.0 if hour <= night_end_hour else 0.0
            elif kind is RowKind.HOUR_OF_DAY:
                values[name] = float(hour)
            elif kind is RowKind.DAY_OF_WEEK:
                values[name] = float(weekday)
            elif kind is RowKind.CATEGORY_CODE:
                value = event.get(field)
                values[name] = float(categories.index(value)) if value in categories else -1.0
            else:
                value = event.get(field)
                values[name] = 1.0 if value is not None and value == extra else 0.0
        return values
