"""Feature vectors one event at a time for any feature set: events of any schema, every aggregation.

:class:`GenericStreamingComputer` is the in-memory streaming engine of the
generic definitions (:mod:`rtml_features.definitions`): events of the feature
set's own :class:`~rtml_common.schema.EventSchema` (given as mappings of its
fields), entities keyed by any field or by several (compound), every
aggregation (stddev, count distinct, last, time since previous / first ...),
:data:`~rtml_features.definitions.LIFETIME` windows and every row kind. It keeps
the guarantees of :class:`~rtml_features.stream.StreamingFeatureComputer` (the
classic sets' engine: faster, generated arithmetic, prefix logs, checkpoints):

* the watermark is the lowest of the highest event times seen per *source* (an
  input partition; a label source joins at its labels' ``labeled_at`` once it has
  delivered); an event older than ``watermark - allowed_lateness`` is refused with
  :class:`~rtml_features.stream.LateEvent`;
* an event within the lateness is inserted where it belongs, in ``(time, id)``
  order, and every already-emitted vector it changes is emitted again as a
  *revision*; a redelivered event (same id, same time) changes nothing and
  returns its latest vector;
* labels join their event by id, whichever arrives first; the earliest
  ``labeled_at`` of an event's labels wins (as in the reference) and counts only in
  vectors at ``t >= labeled_at``; a label reaching emitted vectors revises them;
* state older than any window can reach (the watermark minus the lateness minus
  an entity's horizon) is evicted; LIFETIME aggregates keep a summary of what
  was evicted (:class:`~rtml_features.generic_aggregates.Folded`).

So the last vector emitted for an event equals the reference's
(:mod:`rtml_features.oracle`) for the same events and labels.

>>> from datetime import timedelta
>>> from rtml_features.definitions import Agg, Entity, FeatureSet, WindowAggregate
>>> card = Entity("card", key="customer_id")
>>> fs = FeatureSet("gaps", [WindowAggregate("gap_s", card, Agg.TIME_SINCE_PREVIOUS,
...                                          timedelta(days=1), empty=-1.0)])
>>> computer = GenericStreamingComputer(fs, allowed_lateness=timedelta(minutes=5))
>>> def payment(tid, ms):
...     return {"transaction_id": tid, "event_time": ms, "customer_id": "c", "amount": 1.0}
>>> [(e.transaction_id, e.revision, e.vector) for e in computer.on_event(payment("b", 60_000))]
[('b', 0, {'gap_s': -1.0})]
>>> [(e.transaction_id, e.revision, e.vector) for e in computer.on_event(payment("a", 0))]
[('a', 0, {'gap_s': -1.0}), ('b', 1, {'gap_s': 60.0})]

Limits: a label that arrives after its event is forgotten (behind the watermark by
more than the lateness plus the longest horizon of the set, or the
``label_horizon`` for lifetime windows of label fields) is dropped; a label that
comes before its event waits for it until its ``transaction_time_ms`` (else its
``labeled_at``, which is never earlier) falls behind the lateness. Like the
classic computer's, windows already evicted do not come back if the watermark goes
back (a new partition far behind): an event accepted then misses them, and a
lifetime summary takes it as newer than what it folded. Checkpoints:
:mod:`rtml_features.generic_snapshot`.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from rtml_features.definitions import LIFETIME, Agg, FeatureSet, Ratio
from rtml_features.generic_aggregates import (
    NEVER,
    AggSpec,
    Folded,
    StoredEvent,
    Window,
    aggregate_value,
)
from rtml_features.generic_rows import GenericRows, InvalidEvent, number
from rtml_features.rows import epoch_ms
from rtml_features.stream import Emission, LateEvent

__all__ = ["LIFETIME_LABEL_HORIZON", "DuplicateEventId", "Emission",
           "GenericStreamingComputer", "InvalidEvent", "LateEvent"]


class DuplicateEventId(ValueError):
    """An event reuses the id of a known event at another time (a producer bug: ids are
    the dedupe and label-join key). Raised before any state changes."""


#: How long a label still reaches a lifetime window of a label field by default (the
#: events are kept known that long): chargebacks come within weeks.
LIFETIME_LABEL_HORIZON = timedelta(days=60)


def _ms(delta: timedelta) -> int:
    return delta // timedelta(milliseconds=1)


class _Group:
    """Aggregates sharing (entity, window, delay): one bisection serves them all."""

    __slots__ = ("delay_ms", "entity", "labels", "lifetime", "specs", "window_ms")

    def __init__(self, entity: int, window_ms: int, delay_ms: int, lifetime: bool) -> None:
        self.entity = entity
        self.window_ms = window_ms
        self.delay_ms = delay_ms
        self.lifetime = lifetime
        self.specs: list[AggSpec] = []
        self.labels = False  # whether a spec reads a label field


class _Sorted:
    """Events sorted by (time, id): parallel lists of keys, times and the events."""

    __slots__ = ("events", "keys", "times")

    def __init__(self) -> None:
        self.keys: list[tuple[int, str]] = []
        self.times: list[int] = []
        self.events: list[StoredEvent] = []

    def insert(self, event: StoredEvent) -> None:
        key = event.key
        if not self.keys or key > self.keys[-1]:
            self.keys.append(key)
            self.times.append(event.time_ms)
            self.events.append(event)
            return
        position = bisect_left(self.keys, key)
        self.keys.insert(position, key)
        self.times.insert(position, event.time_ms)
        self.events.insert(position, event)

    def remove(self, event: StoredEvent) -> bool:
        position = bisect_left(self.keys, event.key)
        if position == len(self.keys) or self.events[position] is not event:
            return False
        del self.keys[position], self.times[position], self.events[position]
        return True

    def contains(self, event: StoredEvent) -> bool:
        position = bisect_left(self.keys, event.key)
        return position < len(self.keys) and self.events[position] is event

    def cut(self, before_ms: int) -> list[StoredEvent]:
        """Remove and return the events older than ``before_ms``, oldest first."""
        cut = bisect_left(self.times, before_ms)
        if not cut:
            return []
        dropped = self.events[:cut]
        del self.keys[:cut], self.times[:cut], self.events[:cut]
        return dropped


class _EntityEvents(_Sorted):
    """One entity's retained events, its lifetime summary and, for label windows, its
    retained events known as fraud (few: a window's fraud count scans those only).

    The numeric fields its aggregates read are also kept as columns parallel to the
    events, so a window's values are one slice, not a loop over event objects.
    """

    __slots__ = ("columns", "folded", "frauds")

    def __init__(self, lifetime: bool, labels: bool, fields: tuple[str, ...]) -> None:
        super().__init__()
        self.folded: Folded | None = Folded() if lifetime else None
        self.frauds: _Sorted | None = _Sorted() if labels else None
        self.columns: dict[str, list[float]] = {name: [] for name in fields}

    def insert(self, event: StoredEvent) -> None:
        keys = self.keys
        key = event.key
        numbers = event.numbers
        if not keys or key > keys[-1]:
            keys.append(key)
            self.times.append(event.time_ms)
            self.events.append(event)
            for name, column in self.columns.items():
                column.append(numbers[name])
        else:
            position = bisect_left(keys, key)
            keys.insert(position, key)
            self.times.insert(position, event.time_ms)
            self.events.insert(position, event)
            for name, column in self.columns.items():
                column.insert(position, numbers[name])
        if self.frauds is not None and event.fraud_at != NEVER:
            self.frauds.insert(event)

    def cut(self, before_ms: int) -> list[StoredEvent]:
        if self.frauds is not None:
            self.frauds.cut(before_ms)
        cut = bisect_left(self.times, before_ms)
        if not cut:
            return []
        for column in self.columns.values():
            del column[:cut]
        dropped = self.events[:cut]
        del self.keys[:cut], self.times[:cut], self.events[:cut]
        return dropped

    def relabel(self, event: StoredEvent, before: int, after: int) -> None:
        """``event``'s fraud time changed from ``before`` to ``after`` (NEVER: no fraud)."""
        if self.frauds is not None and self.contains(event):
            if before != NEVER:
                self.frauds.remove(event)
            if after != NEVER:
                self.frauds.insert(event)
        elif self.folded is not None and self.folded.holds(event):
            self.folded.relabel(before, after)

    def is_empty(self) -> bool:
        return not self.events and (self.folded is None or not self.folded.count)


class GenericStreamingComputer:
    """Per-entity sorted events plus the feature set's arithmetic, for any feature set.

    ``allowed_lateness``: how far behind the watermark an event is still accepted
    (and an emitted vector still revised). ``sweep_every``: how often (in watermark
    time) every entity's expired events are evicted and idle entities dropped;
    otherwise an entity's expired events go when it is next touched.
    ``label_horizon``: how long after its event (behind the watermark) a label still
    finds it. Bounded windows need no more than their own horizon, which is always
    kept; a lifetime window of a label field (a card's fraud count ever) folds an
    event long before its label comes, so for such sets the events stay known this
    long (default :data:`LIFETIME_LABEL_HORIZON`): a label later than that is dropped.

    ``track_newest``: keep, per entity, the vector of its newest event for
    :meth:`take_newest_vectors` (what an online store of latest values holds).

    Emissions: ``transaction_id`` is the event's id, ``ids`` its entity ids in
    ``feature_set.entities`` order (the handbook's ``(customer, terminal)`` for its
    sets), ``amount`` its ``amount`` field when the schema has one (else 0.0).
    """

    def __init__(self, feature_set: FeatureSet, allowed_lateness: timedelta = timedelta(0),
                 sweep_every: timedelta = timedelta(days=1),
                 label_horizon: timedelta | None = None, track_newest: bool = False) -> None:
        self.feature_set = feature_set
        schema = feature_set.schema
        self._id_field = schema.id_field
        self._time_field = schema.event_time
        self._amount = "amount" if schema.has("amount") else None
        self.allowed_lateness_ms = _ms(allowed_lateness)
        self.sweep_every_ms = _ms(sweep_every)
        self._entities = feature_set.entities
        self._rows = GenericRows(feature_set)
        self._forget_ms = 0
        self._compile(feature_set)
        if label_horizon is None:
            lifetime_labels = any(a.uses_labels and a.is_lifetime
                                  for a in feature_set.window_aggregates)
            label_horizon = LIFETIME_LABEL_HORIZON if lifetime_labels else timedelta(0)
        #: Events are known (for redeliveries, revisions and label joins) this long
        #: behind the watermark.
        self._forget_ms = max(self._forget_ms, self.allowed_lateness_ms + _ms(label_horizon))
        #: (entity index, entity id) -> its retained events.
        self.states: dict[tuple[int, str], _EntityEvents] = {}
        #: Event id -> the event, while any state or a pending revision may need it.
        self.events: dict[str, StoredEvent] = {}
        self._event_order: list[tuple[int, str]] = []  # heap: when to forget events
        #: Labels whose event has not arrived: id -> (labeled_at, is_fraud, its time or None).
        self.pending_labels: dict[str, tuple[int, float, int | None]] = {}
        #: Emitted vectors still revisable (their event within the lateness).
        self.recent: dict[str, Emission] = {}
        self._recent_order: list[tuple[int, str]] = []  # heap
        self.source_times: dict[str, int | None] = {}
        self.watermark_ms: int | None = None
        self.revisions = 0
        self._last_sweep_ms: int | None = None
        #: With ``track_newest``: (entity name, id) -> the vector last emitted for the
        #: entity's newest event, since the last :meth:`take_newest_vectors`.
        self._newest: dict[tuple[str, str], Emission] | None = {} if track_newest else None

    # -- compilation -----------------------------------------------------------

    def _compile(self, feature_set: FeatureSet) -> None:
        """Group the aggregates and derive, per entity, what it keeps and revises."""
        index = {entity.name: i for i, entity in enumerate(self._entities)}
        groups: dict[tuple[int, int, int], _Group] = {}
        for aggregate in feature_set.window_aggregates:
            entity = index[aggregate.entity.name]
            window_ms, delay_ms = _ms(aggregate.window), _ms(aggregate.delay)
            key = (entity, window_ms, delay_ms)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(entity, window_ms, delay_ms,
                                             aggregate.window == LIFETIME)
            group.specs.append(AggSpec(aggregate.name, aggregate.agg, aggregate.field,
                                       aggregate.empty, aggregate.uses_labels))
        self._groups = list(groups.values())
        aggregates = feature_set.window_aggregates
        self._numeric_fields = tuple(sorted({
            a.field for a in aggregates if a.field is not None and not a.uses_labels
            and a.agg is not Agg.COUNT_DISTINCT}))
        self._distinct_fields = tuple(sorted({
            a.field for a in aggregates if a.field is not None and a.agg is Agg.COUNT_DISTINCT}))
        n = len(self._entities)
        #: Per entity: an event at t changes its vectors stamped >= t + this only.
        self._min_delay = [min((g.delay_ms for g in self._groups if g.entity == i), default=0)
                           for i in range(n)]
        #: Per entity: how far behind ``watermark - lateness`` its events are still read
        #: one by one (bounded windows, and the delay of lifetime ones before folding).
        self._retention_ms = [
            self.allowed_lateness_ms + max(
                (g.delay_ms if g.lifetime else g.window_ms + g.delay_ms
                 for g in self._groups if g.entity == i), default=0)
            for i in range(n)]
        self._lifetime = [any(g.lifetime for g in self._groups if g.entity == i)
                          for i in range(n)]
        lifetime_specs = [(g.entity, s) for g in self._groups if g.lifetime for s in g.specs]
        #: Per entity: the fields its summary folds.
        self._fold_numeric = [tuple(sorted({
            s.field for e, s in lifetime_specs if e == i and s.field is not None
            and not s.label and s.agg is not Agg.COUNT_DISTINCT})) for i in range(n)]
        self._fold_distinct = [tuple(sorted({
            s.field for e, s in lifetime_specs if e == i and s.field is not None
            and s.agg is Agg.COUNT_DISTINCT})) for i in range(n)]
        self._labels = [any(g.entity == i and any(s.label for s in g.specs)
                            for g in self._groups) for i in range(n)]
        self._label_entities = [i for i in range(n) if self._labels[i]]
        #: Per entity: the numeric fields its aggregates read (kept as columns).
        self._columns = [tuple(sorted({
            s.field for g in self._groups if g.entity == i for s in g.specs
            if s.field is not None and not s.label and s.agg is not Agg.COUNT_DISTINCT}))
            for i in range(n)]
        self._names = feature_set.names
        self._ratios = [(f.name, f.numerator.name, f.denominator.name, f.default)
                        for f in feature_set.features if isinstance(f, Ratio)]
        for group in self._groups:
            group.labels = any(spec.label for spec in group.specs)
        self._forget_ms = max(self._retention_ms, default=self.allowed_lateness_ms)
        schema = feature_set.schema
        self._defaults = {name: schema.field(name).default
                          for name in {*self._numeric_fields, *([self._amount] if self._amount
                                                                 else [])}}

    # -- events ----------------------------------------------------------------

    def _read(self, event: Mapping[str, Any]) -> StoredEvent:
        """The stored form of ``event``; :class:`InvalidEvent` if it cannot be held."""
        tid = event.get(self._id_field)
        if tid is None:
            raise InvalidEvent(f"event without its id field {self._id_field!r}")
        raw_time = event.get(self._time_field)
        if isinstance(raw_time, datetime) and raw_time.tzinfo is not None:
            time_ms = epoch_ms(raw_time)
        elif isinstance(raw_time, int) and not isinstance(raw_time, bool):
            time_ms = raw_time
        else:
            raise InvalidEvent(f"event {tid!r}: {self._time_field!r} must be epoch "
                               f"milliseconds (int) or an aware datetime, not {raw_time!r}")
        defaults = self._defaults
        try:
            numbers = {name: number(event.get(name), name, defaults[name])
                       for name in self._numeric_fields}
            rows = self._rows.values(time_ms, event)
            amount = (number(event.get(self._amount), self._amount, defaults[self._amount])
                      if self._amount is not None else 0.0)
        except InvalidEvent as exc:
            raise InvalidEvent(f"event {tid!r}: {exc}") from None
        values = {name: event.get(name) for name in self._distinct_fields}
        ids = tuple(entity.id_of(event) for entity in self._entities)
        return StoredEvent(str(tid), time_ms, ids, numbers, values, rows, amount)

    def on_event(self, event: Mapping[str, Any], source: str = "0") -> list[Emission]:
        """Apply an event; return its vector first, then the revised earlier vectors.

        ``event`` holds the schema's fields, its event time as epoch milliseconds (or an
        aware datetime) under the schema's ``event_time`` name; ``source`` names the
        input partition it was read from (for the watermark).
        """
        stored = self._read(event)
        watermark = self.watermark_ms
        time_ms, tid = stored.time_ms, stored.tid
        if watermark is not None and time_ms < watermark - self.allowed_lateness_ms:
            raise LateEvent(f"event {tid} at {time_ms} is {watermark - time_ms} ms behind the "
                            f"watermark (allowed {self.allowed_lateness_ms} ms)")
        known = self.events.get(tid)
        if known is not None:
            if known.time_ms != time_ms:
                raise DuplicateEventId(f"event {tid} at {time_ms}: an event with this id is "
                                       f"known at {known.time_ms}")
            self._see(source, time_ms)
            latest = self.recent.get(tid)
            return [latest] if latest is not None else []
        pending = self.pending_labels.pop(tid, None)
        if pending is not None:
            stored.set_label(pending[0], pending[1])
        self.events[tid] = stored
        heapq.heappush(self._event_order, (time_ms, tid))
        for entity, entity_id in enumerate(stored.ids):
            if entity_id is None:
                continue
            key = (entity, entity_id)
            state = self.states.get(key)
            if state is None:
                state = self.states[key] = _EntityEvents(
                    self._lifetime[entity], self._labels[entity], self._columns[entity])
            elif watermark is not None:
                self._evict(entity, state, watermark)
            state.insert(stored)
        self._see(source, time_ms)
        emission = Emission(tid, self._emission_ids(stored), time_ms, stored.amount,
                            self._vector(stored))
        self.recent[tid] = emission
        if self._newest is not None:
            self._track_if_newest(stored, emission)
        heapq.heappush(self._recent_order, (time_ms, tid))
        emitted = [emission]
        emitted += self._revise(stored, range(len(stored.ids)), time_ms, add_delay=True)
        self._sweep()
        return emitted

    def on_label(self, transaction_id: str, labeled_at_ms: int, is_fraud: bool,
                 transaction_time_ms: int | None = None, source: str = "") -> list[Emission]:
        """Record a label; return the revised vectors of emitted events it reaches.

        ``source`` (the label partition), when given, joins the watermark at the
        labels' ``labeled_at`` once it has delivered, so the vectors a label read
        late must revise are still revisable. ``transaction_time_ms`` (optional) lets a
        label that comes before its event be forgotten as soon as that event would be
        late.
        """
        if source:
            self._see(source, labeled_at_ms)
        tid = str(transaction_id)
        fraud = 1.0 if is_fraud else 0.0
        event = self.events.get(tid)
        if event is None:
            pending = self.pending_labels.get(tid)
            if pending is None or labeled_at_ms < pending[0]:
                self.pending_labels[tid] = (labeled_at_ms, fraud, transaction_time_ms)
            return []
        if event.label is not None and event.label[0] <= labeled_at_ms:
            return []  # the earliest label wins (equal times: the first read)
        before = event.fraud_at
        event.set_label(labeled_at_ms, fraud)
        after = event.fraud_at
        if before == after:
            return []
        for entity in self._label_entities:
            entity_id = event.ids[entity]
            state = self.states.get((entity, entity_id)) if entity_id is not None else None
            if state is not None:
                state.relabel(event, before, after)
        revised = self._revise(event, self._label_entities,
                               max(min(before, after), event.time_ms))
        self._sweep()
        return revised

    def _track_if_newest(self, event: StoredEvent, emission: Emission) -> None:
        """Remember ``emission`` for each entity whose newest event ``event`` is."""
        newest = self._newest
        assert newest is not None
        for entity, entity_id in enumerate(event.ids):
            if entity_id is None:
                continue
            state = self.states.get((entity, entity_id))
            if state is not None and state.events and state.events[-1] is event:
                newest[(self._entities[entity].name, entity_id)] = emission

    def take_newest_vectors(self) -> dict[tuple[str, str], Emission]:
        """(entity name, id) -> the latest vector of the entity's newest event, emitted
        since the last call; then forget them. Always empty without ``track_newest``.

        An older event's vector (a late arrival, or a revision of one) is never among
        them, so an online store written from these converges to the same state
        whatever order partitions are read in (as the classic computer's).
        """
        if self._newest is None:
            return {}
        taken, self._newest = self._newest, {}
        return taken

    def expect_sources(self, sources: list[str]) -> None:
        """Declare input partitions that will deliver (the watermark waits for each)."""
        for source in sources:
            self.source_times.setdefault(source, None)
        self._update_watermark()

    # -- vectors ---------------------------------------------------------------

    def _vector(self, event: StoredEvent) -> dict[str, float]:
        t = event.time_ms
        values: dict[str, float] = {}
        states = self.states
        for group in self._groups:
            entity_id = event.ids[group.entity]
            state = states.get((group.entity, entity_id)) if entity_id is not None else None
            if state is None:
                for spec in group.specs:
                    values[spec.name] = spec.empty
                continue
            times = state.times
            end = t - group.delay_ms
            upper = bisect_right(times, end)
            lower = 0 if group.lifetime else bisect_right(
                times, end - group.window_ms, 0, upper)
            frauds = None
            if group.labels and state.frauds is not None:
                fraud_times = state.frauds.times
                last = bisect_right(fraud_times, end)
                first = 0 if group.lifetime else bisect_right(
                    fraud_times, end - group.window_ms, 0, last)
                frauds = state.frauds.events[first:last]
            window = Window(state.events, lower, upper,
                            state.folded if group.lifetime else None, frauds, state.columns)
            for spec in group.specs:
                values[spec.name] = aggregate_value(spec, window, event, t)
        values.update(event.rows)
        for name, numerator, denominator, default in self._ratios:
            below = values[denominator]
            values[name] = values[numerator] / below if below != 0 else default
        return {name: values[name] for name in self._names}

    def _emission_ids(self, event: StoredEvent) -> tuple[str | None, str | None]:
        # Emission.ids is typed as the handbook's (customer, terminal) pair; here it is the
        # event's ids in feature_set.entities order, however many entities the set has.
        return cast(tuple[str | None, str | None], event.ids)

    def _revise(self, event: StoredEvent, entities: Any, since_ms: int,
                add_delay: bool = False) -> list[Emission]:
        """Recompute the emitted vectors of ``event``'s entities stamped >= ``since_ms``.

        With ``add_delay`` (``event`` is new, its vector just emitted) from ``since_ms``
        plus the entity's smallest delay, and ``event``'s own vector is not among them;
        for a label, it is (a label known at its event's time counts in its vector).
        """
        skip = event if add_delay else None
        candidates: set[str] = set()
        recent = self.recent
        for entity in entities:
            entity_id = event.ids[entity]
            state = self.states.get((entity, entity_id)) if entity_id is not None else None
            if state is None or not state.times:
                continue
            since = since_ms + self._min_delay[entity] if add_delay else since_ms
            if state.times[-1] < since:
                continue
            start = bisect_left(state.times, since)
            candidates.update(other.tid for other in state.events[start:]
                              if other is not skip and other.tid in recent)
        if not candidates:
            return []
        revised = []
        for tid in sorted(candidates, key=lambda c: (recent[c].time_ms, c)):
            emitted = recent[tid]
            stored = self.events.get(tid)
            if stored is None:
                continue  # forgotten while the watermark moved on a label (not revisable)
            vector = self._vector(stored)
            if vector != emitted.vector:
                revision = Emission(tid, emitted.ids, emitted.time_ms, emitted.amount, vector,
                                    emitted.revision + 1)
                recent[tid] = revision
                if self._newest is not None:
                    self._track_if_newest(stored, revision)
                revised.append(revision)
        self.revisions += len(revised)
        return revised

    # -- watermark and eviction ------------------------------------------------

    def _see(self, source: str, time_ms: int) -> None:
        seen = self.source_times.get(source)
        if seen is None or time_ms > seen:
            self.source_times[source] = time_ms
            self._update_watermark()

    def _update_watermark(self) -> None:
        times = list(self.source_times.values())
        self.watermark_ms = (None if not times or any(t is None for t in times)
                             else min(cast(list[int], times)))

    def _evict(self, entity: int, state: _EntityEvents, watermark: int) -> None:
        """Drop (or fold, for lifetime windows) the entity's events no window reads one by one."""
        cutoff = watermark - self._retention_ms[entity]
        if not state.times or state.times[0] >= cutoff:
            return
        dropped = state.cut(cutoff)
        folded = state.folded
        if folded is not None:
            numeric, distinct = self._fold_numeric[entity], self._fold_distinct[entity]
            for event in dropped:
                folded.add(event, numeric, distinct)

    def _sweep(self) -> None:
        """Forget what no event within the lateness can need; evict everything periodically."""
        watermark = self.watermark_ms
        if watermark is None:
            return
        revisable = watermark - self.allowed_lateness_ms
        order = self._recent_order
        while order and order[0][0] < revisable:
            _, tid = heapq.heappop(order)
            emitted = self.recent.get(tid)
            if emitted is not None and emitted.time_ms < revisable:
                del self.recent[tid]
        forget = watermark - self._forget_ms
        order = self._event_order
        while order and order[0][0] < forget:
            time_ms, tid = heapq.heappop(order)
            known = self.events.get(tid)
            if known is not None and known.time_ms == time_ms:
                del self.events[tid]
        if self._last_sweep_ms is None:
            self._last_sweep_ms = watermark
        elif watermark - self._last_sweep_ms >= self.sweep_every_ms:
            self.evict()
            self._last_sweep_ms = watermark

    def evict(self) -> None:
        """Evict every entity's expired events, drop idle entities and stale early labels."""
        watermark = self.watermark_ms
        if watermark is None:
            return
        for key, state in list(self.states.items()):
            self._evict(key[0], state, watermark)
            if state.is_empty():
                del self.states[key]
        late = watermark - self.allowed_lateness_ms
        stale = [tid for tid, (labeled_at, _, time_ms) in self.pending_labels.items()
                 if (time_ms if time_ms is not None else labeled_at) < late]
        for tid in stale:
            del self.pending_labels[tid]

    def __len__(self) -> int:
        """Events retained (one per entity state holding it)."""
        return sum(len(state.events) for state in self.states.values())

