"""Row-level features of one transaction, and the time arithmetic they share.

Every online engine (the streaming computer, the decision API) interprets a
feature set's :class:`~rtml_features.definitions.RowFeature` declarations
here, with the same UTC, epoch-millisecond arithmetic as the batch engine
(:func:`rtml_features.batch._row_feature`), so a request and the stream can't
disagree about what "night" or "weekend" means.

>>> from datetime import UTC, datetime
>>> from rtml_features.baseline import BASELINE
>>> rows = RowFeatures(BASELINE)
>>> t = epoch_ms(datetime(2018, 4, 7, 3, 30, tzinfo=UTC))   # a Saturday, 03:30
>>> rows.values(t, {"amount": 12.5})
{'tx_amount': 12.5, 'tx_during_weekend': 1.0, 'tx_during_night': 1.0}
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from rtml_features.definitions import FeatureSet, RowKind

MS_PER_DAY = 86_400_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(moment: datetime) -> int:
    """Exact integer milliseconds since the epoch (floor), as the batch engine computes them.

    Integer arithmetic, not ``timestamp() * 1000``: the float product can land
    a millisecond off, which moves a window boundary. (A normalised timedelta's
    seconds and microseconds are non-negative, so the sum floors like
    ``delta // timedelta(milliseconds=1)``, at half its cost: it runs for every event.)

    >>> epoch_ms(datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
    -1
    """
    delta = moment - EPOCH
    return delta.days * MS_PER_DAY + delta.seconds * 1000 + delta.microseconds // 1000


def weekend_and_hour(time_ms: int) -> tuple[bool, int]:
    """(is weekend, UTC hour) of an epoch-millisecond time; 1970-01-01 was a Thursday."""
    days, in_day = divmod(time_ms, MS_PER_DAY)
    return (days + 3) % 7 >= 5, in_day // 3_600_000


#: Row kinds as small ints for the per-event loop: comparing against ``RowKind.FIELD``
#: looks the member up on the enum class each time, which cost ~4 % of the worker's CPU.
_FIELD, _WEEKEND, _NIGHT = range(3)
_KIND_CODES = {RowKind.FIELD: _FIELD, RowKind.WEEKEND: _WEEKEND, RowKind.NIGHT: _NIGHT}


class RowFeatures:
    """The row features of one feature set, precompiled for per-event use."""

    def __init__(self, feature_set: FeatureSet) -> None:
        feature_set.require_classic("the per-event row features")
        self._kinds = [(f.name, _KIND_CODES[f.kind], f.field or "amount", f.night_end_hour)
                       for f in feature_set.row_features]
        self.names = [name for name, *_ in self._kinds]

    def values(self, time_ms: int, fields: Mapping[str, float]) -> dict[str, float]:
        """Feature name -> value for a transaction at ``time_ms`` with numeric ``fields``."""
        weekend, hour = weekend_and_hour(time_ms)
        values: dict[str, float] = {}
        for name, kind, field, night_end_hour in self._kinds:
            if kind == _FIELD:
                values[name] = float(fields[field])
            elif kind == _WEEKEND:
                values[name] = 1.0 if weekend else 0.0
            else:
                values[name] = 1.0 if hour <= night_end_hour else 0.0
        return values
