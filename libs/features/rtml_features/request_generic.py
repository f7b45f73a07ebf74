"""A request's feature vector at its event time, for any feature set, from what one read fetched.

The arithmetic half of request-time computation over the generic layout
(:mod:`rtml_features.online_store.redis.generic_layout`). Per entity,
:class:`EntityRead` holds what one read fetched
(:class:`~rtml_features.online_store.redis.generic_reader.GenericReader`):
the floor entries of every window boundary (running sums, sums of squares,
running LIFETIME extremes), sparse-table levels for finite min / max, the
newest entries at or before each window's end (last, time_since_previous),
the oldest entry of each window (time_since_first), the exact distinct
counts the script computed, the label log's floors and the labels known only
after the request. :class:`GenericRequestVectors` turns them into the
definitions' values, the request's own event included in every window
without delay unless the store already holds it.

Standard deviations come from double-double window sums of ``x`` and ``x**2``
(squares added as exact two-products): ``M2 = S2 - S1 * (S1 / n)`` in
double-double keeps ~30 digits, so even 10^5 amounts near 10^6 give the
reference's value to ~1e-12 relative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rtml_features.definitions import Agg, FeatureSet, Ratio, WindowAggregate
from rtml_features.generic_rows import GenericRows, number
from rtml_features.online_store.redis.generic_layout import (
    distinct_text,
    generic_spec,
    window_ms,
)
from rtml_features.prefix_log import OutOfRange, two_sum

_SPLITTER = 134217729.0  # 2**27 + 1


def two_prod(a: float, b: float) -> tuple[float, float]:
    """``a * b`` as ``(p, e)`` with ``p + e`` exactly the real product (Dekker).

    >>> two_prod(0.1, 0.1)[1] != 0.0
    True
    """
    p = a * b
    c = _SPLITTER * a
    ah = c - (c - a)
    al = a - ah
    c = _SPLITTER * b
    bh = c - (c - b)
    bl = b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def dd_sub(ahi: float, alo: float, bhi: float, blo: float) -> tuple[float, float]:
    """``(ahi + alo) - (bhi + blo)`` in double-double."""
    s, e = two_sum(ahi, -bhi)
    e += alo - blo
    hi = s + e
    return hi, e - (hi - s)


def dd_add_value(hi: float, lo: float, value: float) -> tuple[float, float]:
    s, e = two_sum(hi, value)
    e += lo
    out = s + e
    return out, e - (out - s)


def dd_mul(ahi: float, alo: float, bhi: float, blo: float) -> tuple[float, float]:
    p, e = two_prod(ahi, bhi)
    e += ahi * blo + alo * bhi
    hi = p + e
    return hi, e - (hi - p)


def dd_div(ahi: float, alo: float, b: float) -> tuple[float, float]:
    q1 = ahi / b
    p, e = two_prod(q1, b)
    s, f = two_sum(ahi, -p)
    f = f - e + alo
    q2 = (s + f) / b
    hi = q1 + q2
    return hi, q2 - (hi - q1)


def population_stddev(count: int, s1: tuple[float, float], s2: tuple[float, float]) -> float:
    """Population standard deviation from double-double ``sum x`` and ``sum x**2``.

    >>> population_stddev(3, (6.0, 0.0), (14.0, 0.0)) == math.sqrt(2 / 3)
    True
    """
    if count < 2:
        return 0.0
    mean = dd_div(*s1, float(count))
    m2 = dd_sub(*s2, *dd_mul(*s1, *mean))
    return math.sqrt(max((m2[0] + m2[1]) / count, 0.0))


Head = tuple[int, tuple[float, ...]]
_EMPTY_HEAD: Head = (0, ())


@dataclass
class EntityRead:
    """What one read fetched of an entity (all keyed by absolute boundaries, ms)."""

    #: The request's own event is already in the log (the stream applied it first).
    has: bool = False
    #: The entity's first event time ever (None: never seen).
    first: int | None = None
    #: boundary -> (seq, payload) of its floor entry; None: trimmed past it.
    heads: dict[int, Head | None] = field(default_factory=dict)
    #: (extreme index, after, until) -> the two sparse-table values; None: no event.
    extremes: dict[tuple[int, int, int], tuple[float, float] | None] = field(
        default_factory=dict)
    #: until -> up to two newest entries at or before it: (time, id, payload).
    previous: dict[int, list[tuple[int, str, tuple[float, ...]]]] = field(default_factory=dict)
    #: (after, until) -> time of the oldest entry in the window (None: none).
    oldest: dict[tuple[int, int], int | None] = field(default_factory=dict)
    #: (distinct field index, after, until) -> distinct values (the request's included).
    distinct: dict[tuple[int, int, int], int] = field(default_factory=dict)
    #: label-log boundary -> (seq, running label sums); None: trimmed past it.
    label_heads: dict[int, Head | None] = field(default_factory=dict)
    #: labels known only after the request: (event time, values, id).
    later_labels: list[tuple[int, list[float], str]] = field(default_factory=list)
    #: Whether the store had the entity at all (else every lookup is empty).
    exists: bool = False

    def head(self, bound: int) -> Head:
        if not self.exists:
            return _EMPTY_HEAD
        try:
            found = self.heads[bound]
        except KeyError:
            raise LookupError(f"boundary {bound} was not read") from None
        if found is None:
            raise OutOfRange(f"{bound} is before the entity log's anchor")
        return found

    def label_head(self, bound: int) -> Head:
        if not self.exists:
            return _EMPTY_HEAD
        found = self.label_heads.get(bound, _EMPTY_HEAD)
        if found is None:
            raise OutOfRange(f"{bound} is before the label log's anchor")
        return found


def _pair(payload: Sequence[float], at: int) -> tuple[float, float]:
    return (payload[at], payload[at + 1]) if payload else (0.0, 0.0)


class GenericRequestVectors:
    """Request-time vectors of one feature set over the generic layout's reads.

    Everything that can be known before a request (each aggregate's entity,
    window, delay, payload offset) is worked out here once.
    """

    def __init__(self, feature_set: FeatureSet) -> None:
        self.feature_set = feature_set
        self.rows = GenericRows(feature_set)
        self.specs = {e.name: generic_spec(feature_set, e) for e in feature_set.entities}
        schema = feature_set.schema
        self._defaults = {name: schema.field(name).default if schema.has(name) else None
                          for name in schema.names}
        self._plans: list[tuple[WindowAggregate, int, int, int]] = []
        for aggregate in feature_set.window_aggregates:
            self._plans.append((aggregate, *window_ms(aggregate),
                                self._offset(aggregate)))
        self._ratios = [(f.name, f.numerator.name, f.denominator.name, f.default)
                        for f in feature_set.features if isinstance(f, Ratio)]
        self._names = tuple(feature_set.names)

    def _offset(self, aggregate: WindowAggregate) -> int:
        """Where the aggregate's numbers sit in a payload (or its index among its kind)."""
        spec = self.specs[aggregate.entity.name]
        name, agg = aggregate.field, aggregate.agg
        s, q, life = 2 * len(spec.sum_fields), 2 * len(spec.square_fields), \
            len(spec.lifetime_extremes)
        if name is None:
            return -1
        if aggregate.uses_labels:
            return 2 * spec.label_fields.index(name)
        if agg in (Agg.SUM, Agg.MEAN, Agg.STDDEV):
            return 2 * spec.sum_fields.index(name)
        if agg in (Agg.MIN, Agg.MAX):
            kind = "min" if agg is Agg.MIN else "max"
            if aggregate.is_lifetime:
                return s + q + spec.lifetime_extremes.index((name, kind))
            return spec.extremes.index((name, kind))
        if agg is Agg.LAST:
            return s + q + life + spec.last_fields.index(name)
        if agg is Agg.COUNT_DISTINCT:
            return spec.distinct_fields.index(name)
        return -1

    def compute(self, event: Mapping[str, Any], reads: Mapping[str, EntityRead | None]
                ) -> dict[str, float]:
        """Every feature of ``event`` (the set's schema, time as epoch ms) at its own time.

        ``reads``: entity name -> what the read fetched; an entity the event has no id
        for is absent (or None): its aggregates are their ``empty`` values.
        """
        schema = self.feature_set.schema
        t = int(event[schema.event_time])
        tid = str(event[schema.id_field])
        values = self.rows.values(t, event)
        aggregates: dict[str, float] = {}
        for aggregate, window, delay, offset in self._plans:
            read = reads.get(aggregate.entity.name)
            if read is None or aggregate.entity.id_of(event) is None:
                aggregates[aggregate.name] = aggregate.empty
                continue
            aggregates[aggregate.name] = self._aggregate(
                aggregate, read, event, tid, t, t - window - delay, t - delay,
                delay == 0 and not read.has, offset)
        values.update(aggregates)
        for name, numerator, denominator, default in self._ratios:
            value = aggregates[denominator]
            values[name] = aggregates[numerator] / value if value != 0 else default
        return {name: values[name] for name in self._names}

    def _own(self, event: Mapping[str, Any], name: str) -> float:
        return number(event.get(name), name, self._defaults.get(name))

    def _aggregate(self, aggregate: WindowAggregate, read: EntityRead, event: Mapping[str, Any],
                   tid: str, t: int, after: int, until: int, own: bool, offset: int) -> float:
        upper, lower = read.head(until), read.head(after)
        count = upper[0] - lower[0] + own
        if count <= 0:
            return aggregate.empty
        agg, name = aggregate.agg, aggregate.field
        if agg is Agg.COUNT:
            return float(count)
        if agg is Agg.TIME_SINCE_FIRST:
            if aggregate.is_lifetime:
                first = read.first if read.first is not None and read.first <= until else None
            else:
                first = read.oldest.get((after, until))
            if own:
                first = t if first is None else min(first, t)
            return aggregate.empty if first is None else (t - first) / 1000
        if agg in (Agg.LAST, Agg.TIME_SINCE_PREVIOUS):
            for time_ms, other, payload in read.previous.get(until, []):
                if other == tid:
                    continue
                if time_ms <= after:
                    break
                if agg is Agg.TIME_SINCE_PREVIOUS:
                    return (t - time_ms) / 1000
                return payload[offset]
            return aggregate.empty
        assert name is not None
        if agg is Agg.COUNT_DISTINCT:
            if read.exists:
                distinct = read.distinct.get((offset, after, until), 0)
            else:  # nothing stored: the request's own value, if it has one
                distinct = int(own and distinct_text(event.get(name)) is not None)
            return float(distinct) if distinct else aggregate.empty
        if aggregate.uses_labels:
            (_, high), (_, low) = read.label_head(until), read.label_head(after)
            hi, lo = dd_sub(*_pair(high, offset), *_pair(low, offset))
            total = hi + lo
            unknown = [values[offset // 2] for time_ms, values, _ in read.later_labels
                       if after < time_ms <= until]
            if unknown:
                total -= math.fsum(unknown)
            return total if agg is Agg.SUM else total / count
        x = self._own(event, name) if own else None
        if agg in (Agg.MIN, Agg.MAX):
            pick = min if agg is Agg.MIN else max
            if aggregate.is_lifetime:
                found = upper[1][offset] if upper[0] > 0 and upper[1] else None
            else:
                pair = read.extremes.get((offset, after, until))
                found = pick(pair) if pair is not None else None
            if x is not None:
                found = x if found is None else pick(found, x)
            return aggregate.empty if found is None else found
        s1 = dd_sub(*_pair(upper[1], offset), *_pair(lower[1], offset))
        if x is not None:
            s1 = dd_add_value(*s1, x)
        if agg is Agg.SUM:
            return s1[0] + s1[1]
        if agg is Agg.MEAN:
            return (s1[0] + s1[1]) / count
        assert agg is Agg.STDDEV
        spec = self.specs[aggregate.entity.name]
        at = 2 * len(spec.sum_fields) + 2 * spec.square_fields.index(name)
        s2 = dd_sub(*_pair(upper[1], at), *_pair(lower[1], at))
        if x is not None:
            product, error = two_prod(x, x)
            s2 = dd_add_value(*dd_add_value(*s2, product), error)
        return population_stddev(count, s1, s2)
