"""The aggregations of :mod:`rtml_features.definitions`, over one entity's retained events.

The generic streaming computer (:mod:`rtml_features.stream_generic`) keeps, per
entity, its recent events sorted by ``(event time, event id)`` as
:class:`StoredEvent` records, and for an entity with :data:`~rtml_features.definitions.LIFETIME`
aggregates a :class:`Folded` summary of the events evicted from that list. A
window is then a slice of the list (found by bisection) plus, for a lifetime
window, the summary. :func:`aggregate_value` applies the definitions' rules
to that slice, word for word as the reference (:mod:`rtml_features.oracle`):

* an empty window is the aggregate's ``empty``; ``stddev`` is the population
  deviation, 0 with fewer than two events;
* ``count_distinct`` counts the distinct values present (an event without the
  field adds none; no value at all is ``empty``);
* ``last`` / ``time_since_previous`` read the newest event of the window other than
  the current one, in ``(time, id)`` order; ``time_since_first`` the oldest
  (the current event included);
* label fields (``is_fraud``) count an event's label only once it is known
  (``labeled_at <= t``).

Why a summary rather than the whole history: a lifetime window would otherwise
keep every event of an entity forever and scan it for each vector. An event is
folded only once every future window of the entity contains it (it is older
than the watermark minus the allowed lateness minus the entity's longest bounded
horizon and lifetime delays), so its contribution to a count, a sum, a
deviation, an extreme, a set of values, the first time or the previous event
no longer depends on ``t``. A fraud label's contribution does (it counts from
``labeled_at``): the summary keeps the label times of folded frauds, sorted.
A lifetime aggregate then costs the summary plus the entity's retained events
(the lateness and the delay), never its whole history.

>>> from rtml_features.definitions import Agg
>>> spec = AggSpec("n", Agg.COUNT, None, empty=-1.0, label=False)
>>> aggregate_value(spec, Window([], 0, 0), None, 0)
-1.0
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from dataclasses import dataclass, field
from typing import Any

from rtml_features.definitions import Agg

#: "No fraud known": larger than any epoch millisecond.
NEVER = 1 << 62


@dataclass(slots=True, eq=False)
class StoredEvent:
    """One event as the computer keeps it: what its vector and its entities' windows read.

    Shared by every entity state holding it (one object: a label changes it once for
    all of them). Compared by identity (``eq=False``): the current event of a vector
    is skipped by ``is``, never by value.
    """

    tid: str
    time_ms: int
    #: The event's id per entity of the feature set (None: it belongs to none of that kind).
    ids: tuple[str | None, ...]
    #: Numeric fields the aggregates read, as floats (the schema's default when absent).
    numbers: dict[str, float]
    #: Raw values of the fields ``count_distinct`` reads (None when absent).
    values: dict[str, Any]
    #: The row features, computed once on arrival (they read the event alone).
    rows: dict[str, float]
    #: The ``amount`` field (its default when absent; 0.0 without one): what an
    #: :class:`~rtml_features.stream.Emission` carries.
    amount: float = 0.0
    #: The label known earliest, ``(labeled_at_ms, is_fraud 1.0/0.0)``, or None.
    label: tuple[int, float] | None = None
    #: When the event became known as fraud, or :data:`NEVER` (from ``label``).
    fraud_at: int = NEVER

    @property
    def key(self) -> tuple[int, str]:
        return (self.time_ms, self.tid)

    def set_label(self, labeled_at_ms: int, is_fraud: float) -> None:
        self.label = (labeled_at_ms, is_fraud)
        self.fraud_at = labeled_at_ms if is_fraud else NEVER


@dataclass(slots=True)
class Moments:
    """Count, sum, mean, M2 (Welford), min and max of one field's folded values."""

    total: float = 0.0
    mean: float = 0.0
    m2: float = 0.0
    low: float = math.inf
    high: float = -math.inf


@dataclass(slots=True)
class Folded:
    """What lifetime windows need of an entity's events evicted from its sorted list.

    Events are folded oldest first, each once, and only when every future window
    contains it (see the module docstring), so nothing here is ever taken out; only
    a folded fraud's label time moves when an earlier label of its event arrives.
    """

    count: int = 0
    first_ms: int = 0
    #: The newest folded event (the previous event of a window holding no retained one).
    last: StoredEvent | None = None
    moments: dict[str, Moments] = field(default_factory=dict)
    #: Per ``count_distinct`` field: the distinct values seen.
    distinct: dict[str, set[Any]] = field(default_factory=dict)
    #: ``labeled_at`` of every folded fraud, sorted (a fraud counts from then on).
    fraud_at: list[int] = field(default_factory=list)

    def add(self, event: StoredEvent, numeric_fields: tuple[str, ...],
            distinct_fields: tuple[str, ...]) -> None:
        """Fold ``event`` (older than every event still retained)."""
        self.count += 1
        n = self.count
        if n == 1:
            self.first_ms = event.time_ms
        if self.last is None or event.key > self.last.key:
            self.last = event
        for name in numeric_fields:
            moments = self.moments.get(name)
            if moments is None:
                moments = self.moments[name] = Moments()
            x = event.numbers[name]
            moments.total = math.fsum((moments.total, x))
            delta = x - moments.mean
            moments.mean += delta / n
            moments.m2 += delta * (x - moments.mean)
            moments.low = min(moments.low, x)
            moments.high = max(moments.high, x)
        for name in distinct_fields:
            value = event.values.get(name)
            if value is not None:
                self.distinct.setdefault(name, set()).add(value)
        fraud_at = event.fraud_at
        if fraud_at != NEVER:
            insort(self.fraud_at, fraud_at)

    def holds(self, event: StoredEvent) -> bool:
        """Whether ``event`` was folded here (it is not newer than the newest folded)."""
        return self.last is not None and event.key <= self.last.key

    def relabel(self, old_fraud_at: int, new_fraud_at: int) -> None:
        """A folded event's label changed (an earlier label arrived): move its fraud time."""
        if old_fraud_at != NEVER:
            index = bisect_right(self.fraud_at, old_fraud_at) - 1
            if index >= 0 and self.fraud_at[index] == old_fraud_at:
                del self.fraud_at[index]
        if new_fraud_at != NEVER:
            insort(self.fraud_at, new_fraud_at)


@dataclass(frozen=True, slots=True)
class AggSpec:
    """One window aggregate, reduced to what :func:`aggregate_value` reads."""

    name: str
    agg: Agg
    field: str | None
    empty: float
    #: Whether ``field`` is a label field (counted from its ``labeled_at``).
    label: bool


class Window:
    """The events of one window: ``events[lower:upper]`` of an entity's sorted list, plus
    ``folded`` for a lifetime window and ``frauds`` (its events known as fraud, if the
    caller has them apart).

    Nothing is copied until an aggregation reads values, and the values of one field
    are read once for all the aggregations of a window (a count over a busy terminal's
    month costs two bisections, not a copy of the month).
    """

    __slots__ = ("_numbers", "columns", "events", "folded", "frauds", "lower", "upper")

    def __init__(self, events: list[StoredEvent], lower: int, upper: int,
                 folded: Folded | None = None, frauds: list[StoredEvent] | None = None,
                 columns: dict[str, list[float]] | None = None) -> None:
        self.events = events
        self.lower = lower
        self.upper = upper
        self.folded = folded
        self.frauds = frauds
        #: Numeric fields' values parallel to ``events``, where the caller keeps them.
        self.columns = columns
        self._numbers: dict[str, list[float]] = {}

    def retained(self) -> list[StoredEvent]:
        return self.events[self.lower:self.upper]

    def numbers(self, name: str) -> list[float]:
        """The retained events' values of numeric field ``name``, oldest first."""
        values = self._numbers.get(name)
        if values is None:
            column = self.columns.get(name) if self.columns is not None else None
            values = self._numbers[name] = (
                column[self.lower:self.upper] if column is not None
                else [event.numbers[name] for event in self.retained()])
        return values


def aggregate_value(spec: AggSpec, window: Window, current: StoredEvent | None,
                    t: int) -> float:
    """The aggregate over ``window`` for the vector of ``current`` at ``t`` (epoch ms).

    ``current`` is skipped by ``last`` and ``time_since_previous``.
    """
    agg = spec.agg
    folded = window.folded
    folded_count = folded.count if folded is not None else 0
    events, lower, upper = window.events, window.lower, window.upper
    n = upper - lower + folded_count
    if n == 0:
        return spec.empty
    if agg is Agg.COUNT:
        return float(n)
    if agg is Agg.TIME_SINCE_FIRST:
        first = folded.first_ms if folded is not None and folded_count else events[lower].time_ms
        return (t - first) / 1000
    if agg is Agg.LAST or agg is Agg.TIME_SINCE_PREVIOUS:
        previous = None
        for position in range(upper - 1, lower - 1, -1):
            if events[position] is not current:
                previous = events[position]
                break
        else:
            if folded is not None:
                previous = folded.last
        if previous is None:
            return spec.empty
        if agg is Agg.TIME_SINCE_PREVIOUS:
            return (t - previous.time_ms) / 1000
        assert spec.field is not None
        return previous.numbers[spec.field]
    name = spec.field
    assert name is not None
    if agg is Agg.COUNT_DISTINCT:
        present = {event.values[name] for event in window.retained()}
        present.discard(None)
        if folded is not None:
            seen = folded.distinct.get(name)
            if seen:
                return float(len(seen) + len(present - seen))
        return float(len(present)) if present else spec.empty
    if spec.label:
        frauds = window.frauds if window.frauds is not None else window.retained()
        known = sum(1 for event in frauds if event.fraud_at <= t)
        if folded is not None:
            known += bisect_right(folded.fraud_at, t)
        return float(known) if agg is Agg.SUM else known / n
    values = window.numbers(name)
    moments = folded.moments.get(name) if folded is not None and folded_count else None
    if agg is Agg.MIN:
        return min([*values, moments.low]) if moments is not None else min(values)
    if agg is Agg.MAX:
        return max([*values, moments.high]) if moments is not None else max(values)
    total = math.fsum(values) if moments is None else math.fsum((moments.total, *values))
    if agg is Agg.SUM:
        return total
    if agg is Agg.MEAN:
        return total / n
    assert agg is Agg.STDDEV
    if n < 2:
        return 0.0
    mean = total / n
    m2 = math.fsum((v - mean) ** 2 for v in values)
    if moments is not None:
        m2 += moments.m2 + folded_count * (moments.mean - mean) ** 2
    return math.sqrt(m2 / n)
