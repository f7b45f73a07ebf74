"""Row-level features of the request, computed from the feature set's own definitions.

Why not a copy of the streaming code: the feature set declares its row
features (:class:`rtml_features.definitions.RowFeature`: a field as is, a
weekend flag, a night flag with its ``night_end_hour``); this module
interprets those declarations with the same UTC, epoch-millisecond
arithmetic as :meth:`rtml_features.stream.StreamingFeatureComputer.vector`
and :func:`rtml_features.batch._row_feature`, so a changed definition
changes the API too. (A shared ``row_values`` in ``rtml_features`` would let
all three call one function; see the report to the lead.)
"""

from __future__ import annotations

from datetime import datetime

from rtml_features.definitions import FeatureSet, RowKind

MS_PER_DAY = 86_400_000


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, as the streaming engine resolves event times."""
    return int(moment.timestamp() * 1000)


def day_and_hour(time_ms: int) -> tuple[bool, int]:
    """(is weekend, UTC hour) of an epoch-millisecond time; 1970-01-01 was a Thursday."""
    days, in_day = divmod(time_ms, MS_PER_DAY)
    return (days + 3) % 7 >= 5, in_day // 3_600_000


class RowFeatures:
    """The row features of one feature set, precompiled for the request path."""

    def __init__(self, feature_set: FeatureSet) -> None:
        self._kinds = [(f.name, f.kind, f.field, f.night_end_hour)
                       for f in feature_set.row_features]
        self.names = [name for name, *_ in self._kinds]

    def values(self, time_ms: int, fields: dict[str, float]) -> dict[str, float]:
        """Feature name -> value for a transaction at ``time_ms`` with numeric ``fields``."""
        weekend, hour = day_and_hour(time_ms)
        values: dict[str, float] = {}
        for name, kind, field, night_end_hour in self._kinds:
            if kind is RowKind.FIELD:
                values[name] = float(fields[field])
            elif kind is RowKind.WEEKEND:
                values[name] = 1.0 if weekend else 0.0
            else:
                values[name] = 1.0 if hour <= night_end_hour else 0.0
        return values
