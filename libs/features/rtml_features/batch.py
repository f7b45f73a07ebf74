"""Point-in-time-correct feature computation over history, vectorized with numpy.

Given a *spine* (the rows to compute features for: entity ids, event time,
amount, and optionally the transaction id) and the transaction and label
history, :func:`compute_features` returns each row's feature values as the
streaming engine would have computed them at that row's time: only events at
or before it (simultaneous ones included, see
:mod:`rtml_features.definitions`), and only labels known by then.

How it stays fast (1.75 M rows x 15 features in seconds, no Python loop per
row): events are sorted once per entity by ``(entity, time)`` into one
int64 key ``entity << 38 | milliseconds``; a window ``(t - n, t]`` is then a
contiguous slice found by ``searchsorted`` and summed with prefix sums. A
label-delayed window ``(t - (n + d), t - d]`` is turned around: event ``j``
contributes to every row of its entity whose time lies in
``[max(s_j + d, L_j), s_j + n + d)`` (``L_j`` = when its label became known,
only for label fields), so a row's sum is "contributions started" minus
"contributions ended", two more ``searchsorted`` calls.

Times are resolved to milliseconds (the streaming engine uses the same unit).

Amounts must be finite numbers in ``[0, MAX_AMOUNT]`` (the event contract's
bound, ``RTML_CONTRACT_MAX_AMOUNT``), in the history and in the spine: a frame
holding one outside is refused (:class:`SpineError`, with how many and an
example) instead of computing features with it. Prefix sums run over a whole
entity's history, so one ``inf`` or 1e308 there would turn the windows of every
later row of the entity into ``inf`` or ``nan`` (``inf - inf``). With the bound,
no sum can overflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from rtml_common.events import MAX_AMOUNT
from rtml_features.definitions import (
    Agg,
    Entity,
    FeatureSet,
    Ratio,
    RowFeature,
    RowKind,
    WindowAggregate,
)

TIME_BITS = 38  # 2**38 ms ~ 8.7 years per key (history + horizons); entity codes get 25 bits
MS_PER_DAY = 86_400_000

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class SpineError(ValueError):
    """The spine or history frame lacks a column or has invalid values."""


def to_epoch_ms(values: pd.Series) -> I64:
    """UTC epoch milliseconds of a datetime column (naive values are taken as UTC)."""
    series = pd.to_datetime(values, utc=True)
    return np.asarray(series.dt.tz_localize(None).astype("datetime64[ms]").astype("int64"))


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SpineError(f"{what} lacks column(s) {missing}; has {list(frame.columns)}")


def _require_amounts(frame: pd.DataFrame, what: str) -> None:
    """Refuse a frame with an amount that is not a finite number in ``[0, MAX_AMOUNT]``."""
    try:
        amounts = frame["amount"].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SpineError(f"{what}: amount column is not numeric ({exc})") from None
    bad = ~((amounts >= 0) & (amounts <= MAX_AMOUNT))  # nan compares False both ways
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise SpineError(
            f"{what}: {int(bad.sum())} amount(s) not a finite number in [0, {MAX_AMOUNT!r}] "
            f"(RTML_CONTRACT_MAX_AMOUNT), e.g. {amounts[first]!r} at row {first}")


@dataclass
class _EntityIndex:
    """History of one entity kind, sorted by (entity, time)."""

    keys: I64  # entity << TIME_BITS | (time - origin), sorted ascending
    time_ms: I64  # event times in that order
    amount: F64
    labeled_at_ms: I64  # label known time, or INT64_MAX when no label is known at all
    is_fraud: F64
    codes: dict[object, int]  # entity id -> code

    @property
    def size(self) -> int:
        return len(self.keys)


class _Engine:
    def __init__(self, feature_set: FeatureSet, history: pd.DataFrame,
                 labels: pd.DataFrame | None, spine_ms: I64):
        _require(history, ["transaction_id", "event_time", "customer_id", "terminal_id", "amount"],
                 "transaction history")
        _require_amounts(history, "transaction history")
        self.feature_set = feature_set
        self.history = history.reset_index(drop=True)
        self.time_ms = to_epoch_ms(self.history["event_time"])
        # Keys stay inside their entity's range only if every offset, minus or plus the
        # longest horizon, stays within [0, 2**TIME_BITS): put the origin a horizon early.
        horizon_ms = max(
            (int(a.horizon.total_seconds() * 1000) for a in feature_set.window_aggregates),
            default=0,
        )
        all_ms = np.concatenate((self.time_ms, spine_ms))
        self.origin = (int(all_ms.min()) if len(all_ms) else 0) - horizon_ms - 1
        span = (int(all_ms.max()) if len(all_ms) else 0) - self.origin + horizon_ms
        if span >= 2**TIME_BITS:
            raise SpineError("history, spine and windows span more than ~8 years; split the job")
        self.labeled_at, self.is_fraud = self._join_labels(labels)
        self.indexes: dict[str, _EntityIndex] = {}
        self.spine_indexes: dict[str, _SpineIndex] = {}

    def _join_labels(self, labels: pd.DataFrame | None) -> tuple[I64, F64]:
        n = len(self.history)
        labeled_at = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        is_fraud = np.zeros(n, dtype=np.float64)
        if labels is None or labels.empty:
            return labeled_at, is_fraud
        _require(labels, ["transaction_id", "labeled_at", "is_fraud"], "labels")
        # A transaction labelled twice keeps its first known label (the streaming engine does too).
        known = labels.assign(_ms=to_epoch_ms(labels["labeled_at"])).sort_values("_ms")
        known = known.drop_duplicates("transaction_id", keep="first")
        position = pd.Series(np.arange(n), index=self.history["transaction_id"].to_numpy())
        matched = known["transaction_id"].isin(position.index)
        rows = position.loc[known.loc[matched, "transaction_id"].to_numpy()].to_numpy()
        labeled_at[rows] = known.loc[matched, "_ms"].to_numpy()
        is_fraud[rows] = known.loc[matched, "is_fraud"].astype(float).to_numpy()
        return labeled_at, is_fraud

    def entity_index(self, entity: Entity) -> _EntityIndex:
        if entity.name in self.indexes:
            return self.indexes[entity.name]
        ids = self.history[entity.key]
        present = ids.notna().to_numpy()
        codes_arr, uniques = pd.factorize(ids[present], sort=False)
        codes = np.full(len(ids), -1, dtype=np.int64)
        codes[present] = codes_arr
        if len(uniques) >= 2 ** (63 - TIME_BITS):
            raise SpineError(f"too many distinct {entity.key} values for the key encoding")
        offset = self.time_ms - self.origin
        order = np.lexsort((offset, codes))
        order = order[codes[order] >= 0]
        keys = (codes[order] << TIME_BITS) | offset[order]
        index = _EntityIndex(
            keys=keys, time_ms=self.time_ms[order],
            amount=self.history["amount"].to_numpy(dtype=np.float64)[order],
            labeled_at_ms=self.labeled_at[order], is_fraud=self.is_fraud[order],
            codes={value: i for i, value in enumerate(uniques)},
        )
        self.indexes[entity.name] = index
        return index


def compute_features(
    feature_set: FeatureSet,
    spine: pd.DataFrame,
    history: pd.DataFrame,
    labels: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Feature values for every spine row, point-in-time correct.

    ``history`` columns: transaction_id, event_time, customer_id, terminal_id,
    amount. ``labels`` columns: transaction_id, labeled_at, is_fraud.
    ``spine`` columns: event_time, customer_id, terminal_id, amount (other
    columns, e.g. transaction_id or a label, are carried through). A row sees
    every history event at or before its time.

    Returns the spine's columns plus one float64 column per feature, in the
    feature set's order; ``attrs["feature_set_version"]`` records the version.
    """
    _require(spine, ["event_time", "customer_id", "terminal_id", "amount"], "spine")
    _require_amounts(spine, "spine")
    spine = spine.reset_index(drop=True)
    spine_ms = to_epoch_ms(spine["event_time"])
    engine = _Engine(feature_set, history, labels, spine_ms)
    values: dict[str, F64] = {}
    for row_feature in feature_set.row_features:
        values[row_feature.name] = _row_feature(row_feature, spine, spine_ms)
    aggregates = {
        aggregate.name: _window_aggregate(engine, aggregate, spine, spine_ms)
        for aggregate in feature_set.window_aggregates
    }
    for feature in feature_set.features:
        if isinstance(feature, WindowAggregate):
            values[feature.name] = aggregates[feature.name]
        elif isinstance(feature, Ratio):
            numerator = aggregates[feature.numerator.name]
            denominator = aggregates[feature.denominator.name]
            with np.errstate(divide="ignore", invalid="ignore"):
                values[feature.name] = np.where(
                    denominator != 0, numerator / np.where(denominator != 0, denominator, 1),
                    feature.default,
                )
    result = pd.concat(
        [spine, pd.DataFrame({name: values[name] for name in feature_set.names})], axis=1
    )
    result.attrs["feature_set"] = feature_set.name
    result.attrs["feature_set_version"] = feature_set.version
    return result


def _row_feature(feature: RowFeature, spine: pd.DataFrame, spine_ms: I64) -> F64:
    if feature.kind is RowKind.FIELD:
        return spine[feature.field].to_numpy(dtype=np.float64)
    days = np.floor_divide(spine_ms, MS_PER_DAY)
    if feature.kind is RowKind.WEEKEND:
        weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (weekday 3, Monday = 0)
        return (weekday >= 5).astype(np.float64)
    hour = (spine_ms - days * MS_PER_DAY) // 3_600_000
    return (hour <= feature.night_end_hour).astype(np.float64)


@dataclass
class _SpineIndex:
    """Spine rows as keys of one entity, with the order that sorts them.

    numpy's ``searchsorted`` narrows each search with the previous result when
    the needles are sorted, which turns random probes of a 1.75 M-row array
    (cache misses) into a near-linear merge: ~10x faster on the full backfill.
    """

    keys: I64
    known: npt.NDArray[np.bool_]
    order: I64
    sorted_keys: I64

    def search(self, haystack: I64, offset: int = 0) -> I64:
        """``searchsorted(haystack, keys + offset, 'right')`` in spine row order."""
        found = np.searchsorted(haystack, self.sorted_keys + offset, side="right")
        result = np.empty_like(found)
        result[self.order] = found
        return result


def _spine_index(engine: _Engine, entity: Entity, spine: pd.DataFrame,
                 spine_ms: I64) -> _SpineIndex:
    cached = engine.spine_indexes.get(entity.name)
    if cached is not None:
        return cached
    index = engine.entity_index(entity)
    codes = spine[entity.key].map(index.codes)
    known = codes.notna().to_numpy()
    code_values = np.where(known, codes.fillna(0).to_numpy(dtype=np.float64), 0).astype(np.int64)
    keys = (code_values << TIME_BITS) + (spine_ms - engine.origin)
    order = np.argsort(keys, kind="stable")
    result = _SpineIndex(keys, known, order, keys[order])
    engine.spine_indexes[entity.name] = result
    return result


def _window_aggregate(engine: _Engine, aggregate: WindowAggregate, spine: pd.DataFrame,
                      spine_ms: I64) -> F64:
    index = engine.entity_index(aggregate.entity)
    points = _spine_index(engine, aggregate.entity, spine, spine_ms)
    window_ms = int(aggregate.window.total_seconds() * 1000)
    delay_ms = int(aggregate.delay.total_seconds() * 1000)
    if aggregate.agg in (Agg.MIN, Agg.MAX):
        # Transaction fields only (definitions refuse label fields): the window is one
        # contiguous range of the entity's sorted events, in both window kinds.
        if delay_ms == 0:
            lower, upper = points.search(index.keys, -window_ms), points.search(index.keys)
        else:
            lower = points.search(index.keys, -(delay_ms + window_ms))
            upper = points.search(index.keys, -delay_ms)
        extreme = _range_extreme(_values(index, aggregate.field), lower, upper,
                                 np.minimum if aggregate.agg is Agg.MIN else np.maximum)
        return np.where(points.known, extreme, 0.0)
    if delay_ms == 0 and not aggregate.uses_labels:
        count, total = _trailing_window(aggregate, index, points, window_ms)
    else:
        count, total = _delayed_window(aggregate, index, points, window_ms, delay_ms)
    result: F64
    if aggregate.agg is Agg.COUNT:
        result = count
    elif aggregate.agg is Agg.SUM:
        result = total
    else:  # mean over an empty window is 0 (documented in definitions)
        result = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return np.where(points.known, result, 0.0)


def _values(index: _EntityIndex, field: str | None) -> F64:
    if field is None:
        return np.ones(index.size, dtype=np.float64)
    if field == "amount":
        return index.amount
    raise SpineError(f"field {field!r} is not available without a label delay")


def _trailing_window(aggregate: WindowAggregate, index: _EntityIndex, points: _SpineIndex,
                     window_ms: int) -> tuple[F64, F64]:
    """Window (t - n, t], simultaneous events included."""
    upper = points.search(index.keys)
    lower = points.search(index.keys, -window_ms)
    count = (upper - lower).astype(np.float64)
    if aggregate.field is None:
        return count, count
    prefix = _SegmentedPrefix(index.keys, _values(index, aggregate.field))
    total = prefix.before(upper, points.keys) - prefix.before(lower, points.keys)
    return count, total


def _delayed_window(aggregate: WindowAggregate, index: _EntityIndex, points: _SpineIndex,
                    window_ms: int, delay_ms: int) -> tuple[F64, F64]:
    """Window (t - (n + d), t - d], label fields counted once their label is known."""
    starts = index.keys + delay_ms  # sorted, like index.keys
    ends = starts + window_ms
    count = _interval_cover(starts, ends, np.ones(index.size), points)
    if aggregate.field is None:
        return count, count
    if aggregate.uses_labels:
        # Contribution starts when both the delay has passed and the label is known;
        # a label known only after the window has passed contributes nothing (empty interval).
        label_delay = np.minimum(index.labeled_at_ms - index.time_ms, delay_ms + window_ms)
        label_starts = np.minimum(np.maximum(starts, index.keys + label_delay), ends)
        return count, _interval_cover(label_starts, ends, index.is_fraud, points)
    return count, _interval_cover(starts, ends, _values(index, aggregate.field), points)


def _range_extreme(values: F64, lower: I64, upper: I64, pick: np.ufunc) -> F64:
    """min/max of ``values[lower:upper]`` per query (0 for an empty range), vectorized.

    A sparse table holds the extreme of every run of 2**k values; any range is
    covered by two (overlapping) runs of its largest power-of-two length. Only
    as many levels as the longest queried range needs are built.
    """
    lengths = upper - lower
    result = np.zeros(len(lower), dtype=np.float64)
    if not len(lower) or int(lengths.max(initial=0)) <= 0:
        return result
    levels = [values]
    while 2 ** len(levels) <= int(lengths.max()):
        previous, step = levels[-1], 2 ** (len(levels) - 1)
        levels.append(pick(previous[:-step], previous[step:]))
    present = lengths > 0
    level = np.floor(np.log2(np.where(present, lengths, 1))).astype(np.int64)
    for k in np.unique(level[present]):
        rows = present & (level == k)
        table = levels[int(k)]
        result[rows] = pick(table[lower[rows]], table[upper[rows] - 2 ** int(k)])
    return result


def _sorted_with(values: I64, weights: F64) -> tuple[I64, F64]:
    if len(values) < 2 or bool(np.all(values[1:] >= values[:-1])):
        return values, weights
    order = np.argsort(values, kind="stable")
    return values[order], weights[order]


class _SegmentedPrefix:
    """Prefix sums over entity-sorted keys, exact per entity.

    One global running sum of amounts would make a window's rounding error
    grow with the sum of *all* history (~1e-8 on the full data set);
    restarting per entity bounds it by that entity's own total (~1e-12),
    within the 1e-9 parity bar. Whole-number weights (counts, fraud flags)
    sum exactly, so they keep the cheaper single global pass: a window's
    difference of two exact prefix values is exact whatever lies between.
    """

    def __init__(self, sorted_keys: I64, weights: F64) -> None:
        self.entity = sorted_keys >> TIME_BITS
        self.exact_global = bool(np.all(weights == np.floor(weights))) and (
            float(np.abs(weights).sum()) < 2.0**53)
        if self.exact_global:
            self.inclusive = np.cumsum(weights)
        else:
            self.inclusive = pd.Series(weights).groupby(self.entity).cumsum().to_numpy()

    def before(self, positions: I64, query_keys: I64) -> F64:
        """Sum of the weights at positions < ``positions`` (of the query's entity only,
        unless global sums are exact, where other entities cancel in a difference)."""
        if not len(self.inclusive):  # no event of this entity kind at all
            return np.zeros(len(positions), dtype=np.float64)
        previous = np.maximum(positions - 1, 0)
        if self.exact_global:
            return np.where(positions > 0, self.inclusive[previous], 0.0)
        same_entity = (positions > 0) & (self.entity[previous] == (query_keys >> TIME_BITS))
        return np.where(same_entity, self.inclusive[previous], 0.0)


def _interval_cover(starts: I64, ends: I64, weights: F64, points: _SpineIndex) -> F64:
    """Sum of weights of intervals [start, end) that contain each spine point."""
    starts, start_weights = _sorted_with(starts, weights)
    ends, end_weights = _sorted_with(ends, weights)
    started = _SegmentedPrefix(starts, start_weights).before(points.search(starts), points.keys)
    ended = _SegmentedPrefix(ends, end_weights).before(points.search(ends), points.keys)
    return started - ended
