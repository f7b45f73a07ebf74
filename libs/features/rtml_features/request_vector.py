"""A transaction's feature vector at request time, from its entities' prefix logs.

This is the decision path's half of online/offline consistency: the value of
every feature of a request at its event time ``t`` — the request itself
included, as the batch engine includes a training row's own transaction —
with the definitions' exact windows, computed from the O(1) entries of each
entity's :class:`~rtml_features.prefix_log.EventLog` and
:class:`~rtml_features.prefix_log.LabelLog` that the windows' boundaries
select. Nothing here is specific to a feature set: :func:`log_spec` derives
what an entity's logs must hold from the definitions.

>>> from datetime import timedelta
>>> from rtml_features.definitions import Agg, Entity, FeatureSet, WindowAggregate
>>> customer = Entity("customer", key="customer_id")
>>> fs = FeatureSet("demo", [
...     WindowAggregate("n_1s", customer, Agg.COUNT, timedelta(seconds=1)),
...     WindowAggregate("sum_1s", customer, Agg.SUM, timedelta(seconds=1), field="amount")])
>>> log = log_spec(fs, customer).new_event_log()
>>> _ = log.add("a", 1_000, {"amount": 5.0}); _ = log.add("b", 1_500, {"amount": 7.0})
>>> RequestVectors(fs).compute("c", 2_200, {"amount": 1.0}, {"customer": (log, None)})
{'n_1s': 2.0, 'sum_1s': 8.0}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rtml_features.definitions import Agg, Entity, FeatureSet, Ratio, WindowAggregate
from rtml_features.log_query import EventLogQuery, LabelLogQuery
from rtml_features.prefix_log import EventLog, Extreme, LabelLog
from rtml_features.rows import RowFeatures


def duration_ms(aggregate: WindowAggregate) -> tuple[int, int]:
    """(window, delay) of an aggregate in integer milliseconds."""
    return (int(aggregate.window.total_seconds() * 1000),
            int(aggregate.delay.total_seconds() * 1000))


@dataclass(frozen=True)
class EntityLogSpec:
    """What one entity's logs hold for a feature set, derived from its definitions."""

    #: Transaction fields whose running sums the event log keeps (sum and mean aggregates).
    sum_fields: tuple[str, ...]
    #: (field, "min" | "max") pairs the event log keeps sparse tables for.
    extreme_fields: tuple[tuple[str, Extreme], ...]
    #: Label fields summed by label-delayed aggregates (empty: no label log).
    label_fields: tuple[str, ...]
    #: How far back from a request any window reaches (window + delay), ms.
    horizon_ms: int

    def new_event_log(self) -> EventLog:
        return EventLog(sum_fields=self.sum_fields, extreme_fields=self.extreme_fields)

    def new_label_log(self) -> LabelLog | None:
        return LabelLog(fields=self.label_fields) if self.label_fields else None


def log_spec(feature_set: FeatureSet, entity: Entity) -> EntityLogSpec:
    """The logs ``entity`` needs for every aggregate of ``feature_set`` over it."""
    sums: dict[str, None] = {}
    extremes: dict[tuple[str, Extreme], None] = {}
    labels: dict[str, None] = {}
    horizon = 0
    for aggregate in feature_set.window_aggregates:
        if aggregate.entity != entity:
            continue
        window_ms, delay_ms = duration_ms(aggregate)
        horizon = max(horizon, window_ms + delay_ms)
        if aggregate.field is None:
            continue
        if aggregate.uses_labels:
            labels[aggregate.field] = None
        elif aggregate.agg in (Agg.MIN, Agg.MAX):
            extremes[aggregate.field, "min" if aggregate.agg is Agg.MIN else "max"] = None
        else:
            sums[aggregate.field] = None
    return EntityLogSpec(tuple(sums), tuple(extremes), tuple(labels), horizon)


#: Prefixes of the consistency markers a decision records per entity ``<e>`` of its request,
#: beside its features: the entity's events and its label sum in ``(t - H, t]`` that the
#: online state held (the decision API writes them, the consistency monitor and the
#: consistency benchmark compare them with the full history; one spelling for all three).
SEEN_EVENTS_MARKER = "rtml_seen_events_"
SEEN_LABELS_MARKER = "rtml_seen_labels_"


#: Per entity of the request: its event log and label log, each None when the store has
#: never seen the entity. An entity the request carries no id for (no terminal) is left
#: out: its aggregates are 0, as in the other engines. Any object answering the
#: :mod:`rtml_features.log_query` protocols serves (the reference logs, Redis views).
EntityLogs = Mapping[str, tuple[EventLogQuery | None, LabelLogQuery | None]]


class RequestVectors:
    """Computes request-time vectors of one feature set.

    What can be known before a request is worked out once here (each
    aggregate's entity, window, delay and kind; the ratios; the output
    order): the decision API runs :meth:`compute` on every request.
    """

    def __init__(self, feature_set: FeatureSet) -> None:
        self.feature_set = feature_set
        self.rows = RowFeatures(feature_set)
        self._aggregates = [(a, a.name, a.entity.name, *duration_ms(a))
                            for a in feature_set.window_aggregates]
        self._ratios = [(f.name, f.numerator.name, f.denominator.name, f.default)
                        for f in feature_set.features if isinstance(f, Ratio)]
        self._names = tuple(feature_set.names)

    def compute(self, transaction_id: str, time_ms: int, fields: Mapping[str, float],
                logs: EntityLogs) -> dict[str, float]:
        """Every feature of the request ``(transaction_id, time_ms, fields)`` at ``time_ms``.

        The request counts in each window ending at ``time_ms`` unless its
        entity's log already holds it (the stream applied it first).
        Raises :class:`~rtml_features.prefix_log.OutOfRange` when a window
        reaches before what a log still holds.
        """
        values = self.rows.values(time_ms, fields)
        applied: dict[str, bool] = {}  # entity -> its log already holds the request
        for aggregate, name, entity, window_ms, delay_ms in self._aggregates:
            entry = logs.get(entity)
            if entry is None:  # the request has no id for it: no window
                values[name] = 0.0
                continue
            events, labels = entry
            own: float | None = None
            if delay_ms == 0:
                held = applied.get(entity)
                if held is None:
                    held = applied[entity] = (events is not None
                                              and events.has(transaction_id, time_ms))
                if not held:  # a count or a label field (unknown yet) adds 0 to the total
                    field = aggregate.field
                    own = float(fields[field]) if field and not aggregate.uses_labels else 0.0
            values[name] = self._aggregate(aggregate, events, labels, time_ms - window_ms
                                           - delay_ms, time_ms - delay_ms, time_ms, own)
        for name, numerator, denominator, default in self._ratios:
            value = values[denominator]
            values[name] = values[numerator] / value if value != 0 else default
        return {name: values[name] for name in self._names}

    @staticmethod
    def _aggregate(aggregate: WindowAggregate, events: EventLogQuery | None,
                   labels: LabelLogQuery | None,
                   after: int, until: int, known_by: int, own: float | None) -> float:
        """One aggregate over ``(after, until]``; ``own`` is the request's field value
        when the request is in this window (0.0 for a count or a label field), else None."""
        count = (events.count(after, until) if events is not None else 0) + (own is not None)
        if aggregate.agg is Agg.COUNT:
            return float(count)
        name = aggregate.field
        assert name is not None  # definitions: every aggregate but count has a field
        if aggregate.agg in (Agg.MIN, Agg.MAX):
            kind: Extreme = "min" if aggregate.agg is Agg.MIN else "max"
            found = events.extreme(name, kind, after, until) if events is not None else None
            if own is not None:
                found = own if found is None else (min if kind == "min" else max)(found, own)
            return 0.0 if found is None else found
        if aggregate.uses_labels:  # the request has no label yet: it adds to the count only
            total = labels.known_total(name, after, until, known_by) if labels is not None else 0.0
        else:
            total = events.total(name, after, until) if events is not None else 0.0
            if own is not None:
                total += own
        if aggregate.agg is Agg.SUM:
            return total
        return total / count if count else 0.0
