"""A slow, literal reference for every feature definition: what the engines are held to.

Each event's vector is computed by applying :mod:`rtml_features.definitions`
word for word: for every aggregate, loop over *all* events, keep those of the
event's entity inside the window, and aggregate them. Quadratic and pure
Python on purpose: nothing here is clever, so a disagreement between an engine
(batch, streaming, request-time, Flink) and this module is the engine's bug,
or a gap in the definitions to settle in their docstring.

Inputs are plain data:

* ``events`` — dicts holding the schema's fields, the event time (under the
  schema's ``event_time`` name) as integer epoch milliseconds; optional fields
  may be absent (or ``None``). They may come in any order.
* ``labels`` — dicts with ``transaction_id`` (the event's id, the schema's
  ``id_field``), ``labeled_at`` (epoch ms) and ``is_fraud``. A transaction
  labelled twice keeps its first known label (the earliest ``labeled_at``).

Points are the events themselves: :func:`oracle_features` returns one vector
per event, in the order given.

Choices the definitions leave to an engine, fixed here so every engine agrees:

* an event lacking a key field of an entity belongs to no entity of that kind:
  its aggregates over that entity are the aggregate's ``empty`` value;
* ``count_distinct`` over a window whose events all lack the field is ``empty``
  (no field value), like an empty window;
* ``category_code`` is -1 when the field is absent or holds an undeclared value;
  ``equals`` is 0 when the field is absent.

>>> from datetime import timedelta
>>> from rtml_features.definitions import Agg, Entity, FeatureSet, WindowAggregate
>>> card = Entity("card", key="customer_id")
>>> fs = FeatureSet("o", [WindowAggregate("gap_s", card, Agg.TIME_SINCE_PREVIOUS,
...                                       timedelta(days=1), empty=-1.0)])
>>> events = [{"transaction_id": "a", "event_time": 0, "customer_id": "c", "amount": 1.0},
...           {"transaction_id": "b", "event_time": 5_000, "customer_id": "c", "amount": 2.0}]
>>> oracle_features(fs, events)
[{'gap_s': -1.0}, {'gap_s': 5.0}]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from rtml_features.definitions import (
    LABEL_FIELDS,
    Agg,
    FeatureSet,
    Ratio,
    RowFeature,
    RowKind,
    WindowAggregate,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Event = Mapping[str, Any]


def _ms(delta: timedelta) -> int:
    return delta // timedelta(milliseconds=1)


def first_labels(labels: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, float]]:
    """transaction id -> (labeled_at ms, is_fraud 1.0/0.0) of its earliest label."""
    known: dict[str, tuple[int, float]] = {}
    for label in labels:
        tid = str(label["transaction_id"])
        at = int(label["labeled_at"])
        if tid not in known or at < known[tid][0]:
            known[tid] = (at, 1.0 if label["is_fraud"] else 0.0)
    return known


class _Reference:
    """The feature set and its schema's roles, read once."""

    def __init__(self, feature_set: FeatureSet, events: Sequence[Event],
                 labels: Iterable[Mapping[str, Any]]) -> None:
        self.fs = feature_set
        self.schema = feature_set.schema
        self.events = list(events)
        self.time = self.schema.event_time
        self.id = self.schema.id_field
        self.labels = first_labels(labels)
        self._ids: dict[str, list[str | None]] = {}

    def entity_ids(self, aggregate: WindowAggregate) -> list[str | None]:
        """Every event's id for the aggregate's entity (``Entity.id_of``, computed once)."""
        entity = aggregate.entity
        if entity.name not in self._ids:
            self._ids[entity.name] = [entity.id_of(event) for event in self.events]
        return self._ids[entity.name]

    def numeric(self, event: Event, name: str) -> float:
        """A numeric field's value as float (booleans 1/0; absent: the declared default)."""
        value = event.get(name)
        if value is None:
            value = self.schema.field(name).default
        if value is None:
            raise KeyError(f"event {event.get(self.id)!r} lacks required field {name!r}")
        return float(value)

    def label_value(self, event: Event, at_ms: int) -> float:
        """The event's is_fraud if its label was known at ``at_ms``, else 0."""
        known = self.labels.get(str(event[self.id]))
        return known[1] if known is not None and known[0] <= at_ms else 0.0

    def row(self, feature: RowFeature, event: Event) -> float:
        t = int(event[self.time])
        moment = EPOCH + timedelta(milliseconds=t)
        kind = feature.kind
        if kind is RowKind.FIELD:
            assert feature.field is not None
            return self.numeric(event, feature.field)
        if kind is RowKind.WEEKEND:
            return 1.0 if moment.weekday() >= 5 else 0.0
        if kind is RowKind.NIGHT:
            return 1.0 if moment.hour <= feature.night_end_hour else 0.0
        if kind is RowKind.HOUR_OF_DAY:
            return float(moment.hour)
        if kind is RowKind.DAY_OF_WEEK:
            return float(moment.weekday())
        assert feature.field is not None
        value = event.get(feature.field)
        if kind is RowKind.CATEGORY_CODE:
            categories = self.schema.field(feature.field).categories or ()
            return float(categories.index(value)) if value in categories else -1.0
        assert kind is RowKind.EQUALS
        return 1.0 if value is not None and value == feature.value else 0.0

    def aggregate(self, aggregate: WindowAggregate, position: int) -> float:
        """Literally: the entity's events in the window, then the aggregation."""
        current = self.events[position]
        ids = self.entity_ids(aggregate)
        entity_id = ids[position]
        if entity_id is None:
            return aggregate.empty
        t = int(current[self.time])
        delay = _ms(aggregate.delay)
        lower, upper = t - _ms(aggregate.window) - delay, t - delay  # (lower, upper]
        window = [i for i, event in enumerate(self.events)
                  if ids[i] == entity_id and lower < int(event[self.time]) <= upper]
        if not window:
            return aggregate.empty
        agg = aggregate.agg
        if agg is Agg.COUNT:
            return float(len(window))
        if agg is Agg.TIME_SINCE_FIRST:
            return (t - min(int(self.events[i][self.time]) for i in window)) / 1000
        if agg in (Agg.LAST, Agg.TIME_SINCE_PREVIOUS):
            others = [i for i in window if i != position]
            if not others:
                return aggregate.empty
            previous = self.events[max(others, key=lambda i: (int(self.events[i][self.time]),
                                                              str(self.events[i][self.id])))]
            if agg is Agg.TIME_SINCE_PREVIOUS:
                return (t - int(previous[self.time])) / 1000
            assert aggregate.field is not None
            return self.numeric(previous, aggregate.field)
        assert aggregate.field is not None
        if agg is Agg.COUNT_DISTINCT:
            present = {self.events[i].get(aggregate.field) for i in window} - {None}
            return float(len(present)) if present else aggregate.empty
        if aggregate.field in LABEL_FIELDS:
            values = [self.label_value(self.events[i], t) for i in window]
        else:
            values = [self.numeric(self.events[i], aggregate.field) for i in window]
        if agg is Agg.SUM:
            return math.fsum(values)
        if agg is Agg.MEAN:
            return math.fsum(values) / len(values)
        if agg is Agg.MIN:
            return min(values)
        if agg is Agg.MAX:
            return max(values)
        assert agg is Agg.STDDEV
        if len(values) < 2:
            return 0.0
        mean = math.fsum(values) / len(values)
        return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))

    def vector(self, position: int) -> dict[str, float]:
        event = self.events[position]
        aggregates = {a.name: self.aggregate(a, position) for a in self.fs.window_aggregates}
        vector: dict[str, float] = {}
        for feature in self.fs.features:
            if isinstance(feature, RowFeature):
                vector[feature.name] = self.row(feature, event)
            elif isinstance(feature, WindowAggregate):
                vector[feature.name] = aggregates[feature.name]
            else:
                assert isinstance(feature, Ratio)
                denominator = aggregates[feature.denominator.name]
                vector[feature.name] = (aggregates[feature.numerator.name] / denominator
                                        if denominator != 0 else feature.default)
        return vector


def oracle_features(feature_set: FeatureSet, events: Sequence[Event],
                    labels: Iterable[Mapping[str, Any]] = ()) -> list[dict[str, float]]:
    """Each event's feature vector (name -> value, in the set's order), by the definitions.

    O(events^2 x aggregates): for tests over a few hundred events, not for data.
    """
    reference = _Reference(feature_set, events, labels)
    return [reference.vector(i) for i in range(len(reference.events))]
