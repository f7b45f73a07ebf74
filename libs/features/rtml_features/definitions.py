"""Declarative feature definitions: data that every engine interprets the same way.

A :class:`FeatureSet` lists features of three kinds, each a frozen dataclass
that validates itself on construction:

* :class:`RowFeature` — computed from the event alone (a numeric field,
  weekend, night, hour of day, day of week, a categorical field's code or
  one category's indicator).
* :class:`WindowAggregate` — an aggregation (:class:`Agg`: count, sum, mean,
  min, max, standard deviation, count distinct, last value, time since the
  previous event, time since the first) of one entity's events over a sliding
  event-time window ending at the event, *including it*: the window is
  ``(t - n, t]`` (:data:`LIFETIME` for "every event so far"). Min and max
  apply to event fields only; an aggregation of an empty window is its
  ``empty`` value (default 0). With a label
  delay ``d`` the window is ``(t - (n + d), t - d]`` and the events carry the
  fields of their label (``is_fraud``) when that label was known at ``t``
  (``labeled_at <= t``); an event whose label is not yet known counts with
  label fields 0.
* :class:`Ratio` — one aggregate divided by another of the same entity and
  window, with a default when the denominator is 0 (terminal risk).

Fields and entities come from the feature set's :class:`~rtml_common.schema.EventSchema`
(the handbook's transaction unless the set declares its own): an entity is
keyed by any string field of the schema, or by several (a compound key such
as customer x merchant); aggregates and row features read any numeric or
boolean field. The set validates every reference against its schema on
construction (:class:`DefinitionError` naming the feature and the field).
Label fields (``is_fraud``) come from the platform's label contract
(:data:`rtml_common.handbook.LABEL_SCHEMA`).

The engines (streaming, batch, Flink) never interpret names or strings: they
read these objects. The feature set's :attr:`FeatureSet.version` is a hash of
the canonical definitions, so changing any definition changes the Redis keys
and training sets it produces.

Simultaneous events: a window ending at ``t`` contains every event with
event time ``<= t``, including other events stamped exactly ``t`` (the SQL
``RANGE ... CURRENT ROW`` convention, so the Flink engine agrees). Times are
resolved to milliseconds in every engine.

>>> from datetime import timedelta
>>> customer = Entity("customer", key="customer_id")
>>> fs = FeatureSet("demo", [
...     RowFeature("amount", RowKind.FIELD, field="amount"),
...     WindowAggregate("customer_nb_tx_1day", customer, Agg.COUNT, timedelta(days=1)),
... ])
>>> fs.names
['amount', 'customer_nb_tx_1day']
>>> len(fs.version)
12

Semantics of the aggregations beyond count/sum/mean/min/max, one rule each
(every engine implements exactly these; parity tests pin them to each other):

* ``stddev`` — the population standard deviation of the field's values in the
  window (0 with fewer than two events).
* ``count_distinct`` — the number of distinct values of the field among the
  window's events (exact; events without the field are not counted).
* ``last`` — the field's value on the *previous* event: the newest event of
  the window other than the current one, in ``(event time, event id)`` order
  (the window includes simultaneous events, so a simultaneous event with a
  larger id is "previous" too). ``empty`` when there is none.
* ``time_since_previous`` — ``t`` minus that previous event's time, in
  seconds (0 for a simultaneous event); ``empty`` when there is none.
* ``time_since_first`` — ``t`` minus the oldest event's time in the window, in
  seconds, the current event included (an entity's first event gives 0): with
  :data:`LIFETIME`, the entity's age.

Missing values (optional fields), the same in every engine
(:mod:`rtml_features.oracle` is the literal reference):

* an event lacking a key field of an entity belongs to no entity of that kind:
  its aggregates over that entity are their ``empty`` value;
* ``count_distinct`` over a window whose events all lack the field is ``empty``;
* a numeric field read by an aggregate or a row feature is required or has a
  declared default (checked by :class:`FeatureSet`), which an event without it
  contributes;
* ``category_code`` is -1 when the field is absent (or holds an undeclared
  value), ``equals`` 0.
* a transaction labelled twice keeps its earliest known label.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any

from rtml_common.handbook import TRANSACTION_SCHEMA
from rtml_common.schema import EventSchema, FieldType

#: Fields a label contributes to label-delayed aggregates (the platform's label contract).
LABEL_FIELDS = frozenset({"is_fraud"})
#: A window longer than any history: every event of the entity so far ("lifetime").
#: Finite (1,000 years) so every engine's window arithmetic holds unchanged.
LIFETIME = timedelta(days=365_000)

#: The computational description of the handbook transaction schema (names, types,
#: defaults, categories, roles: what feature values depend on; not bounds or texts).
#: A feature set over exactly this schema hashes its definitions alone, so the
#: ``baseline`` and ``extended`` versions stay what models were trained and registered
#: under; any other schema (or an edited handbook schema) is part of the version.
IMPLIED_SCHEMA_DIGEST = "cccb92afaddd"


class DefinitionError(ValueError):
    """A feature definition is invalid; the message says which and why."""


class UnsupportedDefinition(DefinitionError):
    """A valid definition that a particular engine does not compute (the message says which)."""


class Agg(StrEnum):
    """Aggregations over a window's events (semantics: the module docstring)."""

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    STDDEV = "stddev"
    COUNT_DISTINCT = "count_distinct"
    LAST = "last"
    TIME_SINCE_PREVIOUS = "time_since_previous"
    TIME_SINCE_FIRST = "time_since_first"


#: Aggregations that read no field (they count or time the events themselves).
FIELDLESS_AGGS = frozenset({Agg.COUNT, Agg.TIME_SINCE_PREVIOUS, Agg.TIME_SINCE_FIRST})
#: Aggregations of a numeric field's values.
NUMERIC_AGGS = frozenset({Agg.SUM, Agg.MEAN, Agg.MIN, Agg.MAX, Agg.STDDEV, Agg.LAST})
#: Aggregations the label fields support (a fraud count or rate).
LABEL_AGGS = frozenset({Agg.SUM, Agg.MEAN})
#: The aggregations of the first definitions (every engine, Flink included, computes them).
CLASSIC_AGGS = frozenset({Agg.COUNT, Agg.SUM, Agg.MEAN, Agg.MIN, Agg.MAX})


class RowKind(StrEnum):
    """Row-level derivations from the event itself."""

    FIELD = "field"  #: a numeric or boolean field as is (booleans as 1.0 / 0.0)
    WEEKEND = "weekend"  #: 1 if the event time (UTC) is a Saturday or Sunday
    NIGHT = "night"  #: 1 if the event hour (UTC) is <= ``night_end_hour``
    HOUR_OF_DAY = "hour_of_day"  #: the event hour (UTC), 0..23
    DAY_OF_WEEK = "day_of_week"  #: the event's weekday (UTC), Monday 0 .. Sunday 6
    CATEGORY_CODE = "category_code"  #: a categorical field's index in its categories, -1 absent
    EQUALS = "equals"  #: 1 if a string field equals ``value``, else 0 (one-hot: one per value)


#: Row kinds reading a field of the event (the others read only its time).
FIELD_ROW_KINDS = frozenset({RowKind.FIELD, RowKind.CATEGORY_CODE, RowKind.EQUALS})
#: The row kinds of the first definitions (every engine computes them).
CLASSIC_ROW_KINDS = frozenset({RowKind.FIELD, RowKind.WEEKEND, RowKind.NIGHT})


def _check_name(name: str) -> None:
    if not name or not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise DefinitionError(f"feature name {name!r} must be an identifier (letters, digits, _)")


@dataclass(frozen=True)
class Entity:
    """What a window aggregates per: its name and the event field(s) holding its id.

    ``key`` is one field name, or a tuple of several for a compound entity (customer x
    merchant). The fields are checked against the feature set's schema (string fields).
    An event missing any key field (an optional field absent) belongs to no entity
    of this kind: its windows do not see it.
    """

    name: str
    key: str | tuple[str, ...]

    def __post_init__(self) -> None:
        _check_name(self.name)
        if isinstance(self.key, list):
            object.__setattr__(self, "key", tuple(self.key))
        if isinstance(self.key, tuple):
            if len(self.key) < 2:
                raise DefinitionError(f"entity {self.name!r}: a compound key needs >= 2 fields "
                                      "(use a plain string for one)")
            if len(set(self.key)) != len(self.key):
                raise DefinitionError(f"entity {self.name!r}: key fields repeat")
        if not all(isinstance(k, str) and k for k in self.keys):
            raise DefinitionError(f"entity {self.name!r}: key must name event fields")

    @property
    def keys(self) -> tuple[str, ...]:
        """The key field names, in declaration order."""
        return self.key if isinstance(self.key, tuple) else (self.key,)

    def id_of(self, event: Mapping[str, Any]) -> str | None:
        """The entity id of ``event`` (None when a key field is absent).

        One key: its value as is (the handbook's Redis keys and ids are unchanged).
        Compound: the values as a compact JSON array, unambiguous whatever they hold.

        >>> pair = Entity("pair", ("customer_id", "merchant"))
        >>> pair.id_of({"customer_id": "c1", "merchant": "m"})
        '["c1","m"]'
        """
        if isinstance(self.key, str):
            value = event.get(self.key)
            return None if value is None else str(value)
        values = [event.get(k) for k in self.key]
        if any(v is None for v in values):
            return None
        return json.dumps([str(v) for v in values], separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class RowFeature:
    """A feature computed from the event alone."""

    name: str
    kind: RowKind
    field: str | None = None
    night_end_hour: int = 6
    #: The category an ``EQUALS`` feature tests for.
    value: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.kind in FIELD_ROW_KINDS and self.field is None:
            raise DefinitionError(f"{self.name}: {self.kind} needs a field")
        if self.kind not in FIELD_ROW_KINDS and self.field not in (None, "amount"):
            raise DefinitionError(f"{self.name}: {self.kind} reads the event time, not a field")
        if (self.kind is RowKind.EQUALS) != (self.value is not None):
            raise DefinitionError(f"{self.name}: value is needed by (and only by) equals")
        if not 0 <= self.night_end_hour <= 23:
            raise DefinitionError(f"{self.name}: night_end_hour must be in 0..23")


def one_hot(prefix: str, field: str, categories: Sequence[str]) -> list[RowFeature]:
    """One ``EQUALS`` row feature per category: ``{prefix}_{category}``.

    >>> [f.name for f in one_hot("channel", "channel", ["web", "app"])]
    ['channel_web', 'channel_app']
    """
    return [RowFeature(f"{prefix}_{category}", RowKind.EQUALS, field=field, value=category)
            for category in categories]


@dataclass(frozen=True)
class WindowAggregate:
    """An aggregation of an entity's events over a sliding event-time window."""

    name: str
    entity: Entity
    agg: Agg
    window: timedelta
    field: str | None = None
    label_delay: timedelta | None = None
    #: The value of an empty window (no event, no previous event, no field value).
    empty: float = 0.0

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.window <= timedelta(0):
            raise DefinitionError(f"{self.name}: window must be positive, got {self.window}")
        if self.window > LIFETIME:
            raise DefinitionError(f"{self.name}: window longer than LIFETIME")
        if self.label_delay is not None and self.label_delay < timedelta(0):
            raise DefinitionError(f"{self.name}: label_delay must be >= 0")
        if not math.isfinite(self.empty):
            raise DefinitionError(f"{self.name}: empty must be finite, not {self.empty!r}")
        if self.agg in FIELDLESS_AGGS:
            if self.field is not None:
                raise DefinitionError(f"{self.name}: {self.agg} takes no field")
        elif self.field is None:
            raise DefinitionError(f"{self.name}: {self.agg} needs a field")
        elif self.field in LABEL_FIELDS:
            if self.agg not in LABEL_AGGS:
                raise DefinitionError(
                    f"{self.name}: {self.agg} of label field {self.field!r} is not meaningful "
                    "(use sum or mean: a fraud count or rate)"
                )
            if self.label_delay is None:
                raise DefinitionError(
                    f"{self.name}: label field {self.field!r} needs a label_delay "
                    "(labels are known only later than the transaction)"
                )

    @property
    def uses_labels(self) -> bool:
        return self.field in LABEL_FIELDS

    @property
    def delay(self) -> timedelta:
        return self.label_delay or timedelta(0)

    @property
    def horizon(self) -> timedelta:
        """How far back from ``t`` this aggregate can look (window + delay)."""
        return self.window + self.delay

    @property
    def is_lifetime(self) -> bool:
        return self.window == LIFETIME

    @property
    def state_key(self) -> tuple[str, timedelta, timedelta]:
        """Aggregates sharing (entity, window, delay) share one window scan."""
        return (self.entity.name, self.window, self.delay)


@dataclass(frozen=True)
class Ratio:
    """``numerator / denominator`` of two aggregates over the same entity and window."""

    name: str
    numerator: WindowAggregate
    denominator: WindowAggregate
    default: float = 0.0

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.numerator.state_key != self.denominator.state_key:
            raise DefinitionError(
                f"{self.name}: numerator and denominator must share entity, window and delay"
            )
        if not math.isfinite(self.default):  # FeatureVector, online stores, models: finite
            raise DefinitionError(f"{self.name}: default must be finite, not {self.default!r}")


Feature = RowFeature | WindowAggregate | Ratio


def entity_of(feature: Feature) -> Entity | None:
    """The entity a feature's value belongs to (None for row features)."""
    if isinstance(feature, WindowAggregate):
        return feature.entity
    if isinstance(feature, Ratio):
        return feature.numerator.entity
    return None


def _describe(feature: Feature) -> dict[str, Any]:
    """Canonical, JSON-able description of a feature (the input of the version hash).

    Keys added after the first definitions appear only when they differ from what the
    first definitions meant, so the versions of the sets declared then do not change.
    """
    if isinstance(feature, RowFeature):
        described: dict[str, Any] = {
            "type": "row", "name": feature.name, "kind": str(feature.kind),
            "field": feature.field if feature.field is not None else "amount",
            "night_end_hour": feature.night_end_hour}
        if feature.value is not None:
            described["value"] = feature.value
        return described
    if isinstance(feature, WindowAggregate):
        described = {"type": "window", "name": feature.name, "entity": feature.entity.name,
                     "key": (feature.entity.key if isinstance(feature.entity.key, str)
                             else list(feature.entity.key)),
                     "agg": str(feature.agg), "field": feature.field,
                     "window_s": feature.window.total_seconds(),
                     "label_delay_s": feature.delay.total_seconds()}
        if feature.empty != 0.0:
            described["empty"] = feature.empty
        return described
    return {"type": "ratio", "name": feature.name, "default": feature.default,
            "numerator": _describe(feature.numerator),
            "denominator": _describe(feature.denominator)}


def computational_schema(schema: EventSchema) -> dict[str, Any]:
    """What of a schema feature values depend on: roles, names, types, defaults, categories."""
    return {"id_field": schema.id_field, "event_time": schema.event_time,
            "fields": [{"name": f.name, "type": f.type.value, "required": f.required,
                        "default": f.default,
                        "categories": list(f.categories) if f.categories else None}
                       for f in schema.fields]}


def schema_digest(schema: EventSchema) -> str:
    """12 hex chars of the SHA-256 of :func:`computational_schema`."""
    canonical = json.dumps(computational_schema(schema), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class FeatureSet:
    """A named, versioned list of features computed together for each event.

    ``schema`` is the event the features are computed for (the handbook's transaction by
    default); ``source_topic`` defaults (``""``) to its topic. Every field and entity key a
    feature reads is checked against it here.
    """

    name: str
    features: Sequence[Feature]
    source_topic: str = ""
    label_topic: str = "labels"
    description: str = ""
    schema: EventSchema = TRANSACTION_SCHEMA
    _names: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_name(self.name.replace("-", "_"))
        names = tuple(f.name for f in self.features)
        if not names:
            raise DefinitionError(f"feature set {self.name!r} has no features")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DefinitionError(f"feature set {self.name!r}: duplicate names {duplicates}")
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "_names", names)
        if not self.source_topic:
            object.__setattr__(self, "source_topic", self.schema.topic)
        for feature in self.features:
            if isinstance(feature, RowFeature):
                self._check_row(feature)
        entities: dict[str, Entity] = {}
        for aggregate in self.window_aggregates:
            self._check_aggregate(aggregate)
            if entities.setdefault(aggregate.entity.name, aggregate.entity) != aggregate.entity:
                raise DefinitionError(f"feature set {self.name!r}: two entities are named "
                                      f"{aggregate.entity.name!r} with different keys")

    def _field_error(self, feature: str, name: str, why: str) -> DefinitionError:
        return DefinitionError(f"{feature}: field {name!r} {why} (schema "
                               f"{self.schema.name!r}: {', '.join(self.schema.names)})")

    def _numeric_field(self, feature: str, name: str) -> None:
        """A field sums, means, bounds and row values can read: numeric, always present."""
        if not self.schema.has(name):
            raise self._field_error(feature, name, "is not declared")
        declared = self.schema.field(name)
        if declared.type not in (FieldType.NUMBER, FieldType.INTEGER, FieldType.BOOLEAN):
            raise self._field_error(feature, name, f"is a {declared.type}, not numeric")
        if not declared.required and declared.default is None:
            raise self._field_error(feature, name, "is optional without a default "
                                    "(declare one: the value of an event without it)")

    def _check_row(self, feature: RowFeature) -> None:
        if feature.kind is RowKind.FIELD:
            assert feature.field is not None
            self._numeric_field(feature.name, feature.field)
        elif feature.kind in (RowKind.CATEGORY_CODE, RowKind.EQUALS):
            assert feature.field is not None
            if not self.schema.has(feature.field):
                raise self._field_error(feature.name, feature.field, "is not declared")
            declared = self.schema.field(feature.field)
            if feature.kind is RowKind.CATEGORY_CODE and not declared.categorical:
                raise self._field_error(feature.name, feature.field,
                                        "has no declared categories to code")
            if declared.type is not FieldType.STRING:
                raise self._field_error(feature.name, feature.field, "is not a string field")
            if (feature.kind is RowKind.EQUALS and declared.categories is not None
                    and feature.value not in declared.categories):
                raise DefinitionError(f"{feature.name}: {feature.value!r} is not a category of "
                                      f"{feature.field!r} ({', '.join(declared.categories)})")

    def _check_aggregate(self, aggregate: WindowAggregate) -> None:
        for key in aggregate.entity.keys:
            if not self.schema.has(key):
                raise self._field_error(f"{aggregate.name} (entity {aggregate.entity.name!r})",
                                        key, "is not declared")
            if self.schema.field(key).type is not FieldType.STRING:
                raise self._field_error(f"{aggregate.name} (entity {aggregate.entity.name!r})",
                                        key, "must be a string field to key an entity")
        if aggregate.field is None or aggregate.uses_labels:
            return
        if aggregate.agg is Agg.COUNT_DISTINCT:
            if not self.schema.has(aggregate.field):
                raise self._field_error(aggregate.name, aggregate.field, "is not declared")
            if self.schema.field(aggregate.field).type is FieldType.TIMESTAMP:
                raise self._field_error(aggregate.name, aggregate.field,
                                        "is a timestamp (count distinct reads values)")
            return
        self._numeric_field(aggregate.name, aggregate.field)

    @property
    def names(self) -> list[str]:
        """Feature names in declaration order (the model's input order)."""
        return list(self._names)

    @cached_property
    def version(self) -> str:
        """12 hex chars of the SHA-256 of the canonical definitions (and schema).

        The schema is part of it unless it is the handbook's (:data:`IMPLIED_SCHEMA_DIGEST`).
        """
        described: Any = [_describe(f) for f in self.features]
        digest = schema_digest(self.schema)
        if digest != IMPLIED_SCHEMA_DIGEST:
            described = {"schema": computational_schema(self.schema), "features": described}
        canonical = json.dumps(described, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def row_features(self) -> list[RowFeature]:
        return [f for f in self.features if isinstance(f, RowFeature)]

    @property
    def window_aggregates(self) -> list[WindowAggregate]:
        """Every aggregate needed, including the parts of ratios (deduplicated)."""
        found: dict[str, WindowAggregate] = {}
        for feature in self.features:
            parts: list[WindowAggregate] = []
            if isinstance(feature, WindowAggregate):
                parts = [feature]
            elif isinstance(feature, Ratio):
                parts = [feature.numerator, feature.denominator]
            for part in parts:
                if found.setdefault(part.name, part) != part:
                    raise DefinitionError(f"two different aggregates are named {part.name!r}")
        return list(found.values())

    @property
    def entities(self) -> list[Entity]:
        seen: dict[str, Entity] = {}
        for aggregate in self.window_aggregates:
            seen.setdefault(aggregate.entity.name, aggregate.entity)
        return list(seen.values())

    @property
    def uses_labels(self) -> bool:
        return any(a.uses_labels for a in self.window_aggregates)

    @property
    def fields_read(self) -> list[str]:
        """The event fields the features read (besides the event id and time), in schema order."""
        wanted: set[str] = set()
        for entity in self.entities:
            wanted.update(entity.keys)
        for aggregate in self.window_aggregates:
            if aggregate.field is not None and not aggregate.uses_labels:
                wanted.add(aggregate.field)
        for row in self.row_features:
            if row.kind in FIELD_ROW_KINDS and row.field is not None:
                wanted.add(row.field)
        return [name for name in self.schema.names if name in wanted]

    @property
    def category_codes(self) -> dict[str, tuple[str, ...]]:
        """Feature name -> declared categories, for the features that are category codes.

        What drift monitoring bins per category
        (:func:`rtml_monitoring.reference.describe_categorical`).
        """
        codes: dict[str, tuple[str, ...]] = {}
        for row in self.row_features:
            if row.kind is RowKind.CATEGORY_CODE and row.field is not None:
                categories = self.schema.field(row.field).categories
                if categories is not None:
                    codes[row.name] = categories
        return codes

    @property
    def classic(self) -> bool:
        """Whether only the first definitions' aggregations and row kinds are used.

        Engines that compute only those (for now: the streaming fast path, the online
        prefix layout, Flink) check this and refuse other sets with the reason.
        """
        return (all(a.agg in CLASSIC_AGGS for a in self.window_aggregates)
                and all(r.kind in CLASSIC_ROW_KINDS for r in self.row_features)
                and all(len(e.keys) == 1 for e in self.entities))

    def require_classic(self, engine: str) -> None:
        """Refuse, naming the features, a set an engine computing only :attr:`classic` cannot.

        >>> from datetime import timedelta
        >>> card = Entity("card", key="customer_id")
        >>> FeatureSet("x", [WindowAggregate("gap", card, Agg.TIME_SINCE_PREVIOUS,
        ...                                  timedelta(days=1))]).require_classic("Flink")
        Traceback (most recent call last):
        ...
        rtml_features.definitions.UnsupportedDefinition: Flink cannot compute gap \
(time_since_previous) of feature set 'x' yet
        """
        if self.classic:
            return
        odd = [f"{a.name} ({a.agg})" for a in self.window_aggregates
               if a.agg not in CLASSIC_AGGS or len(a.entity.keys) > 1]
        odd += [f"{r.name} ({r.kind})" for r in self.row_features
                if r.kind not in CLASSIC_ROW_KINDS]
        raise UnsupportedDefinition(f"{engine} cannot compute {', '.join(odd)} of feature set "
                                    f"{self.name!r} yet")

    def horizon(self, entity: Entity) -> timedelta:
        """How much history the engines must keep for ``entity``."""
        return max(
            (a.horizon for a in self.window_aggregates if a.entity == entity),
            default=timedelta(0),
        )

    def describe(self) -> list[dict[str, Any]]:
        """The canonical description (for docs, training-run lineage, Redis metadata)."""
        return [_describe(f) for f in self.features]
