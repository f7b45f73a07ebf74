"""Declarative feature definitions: data that every engine interprets the same way.

A :class:`FeatureSet` lists features of three kinds, each a frozen dataclass
that validates itself on construction:

* :class:`RowFeature` — computed from the transaction alone (amount, weekend,
  night).
* :class:`WindowAggregate` — an aggregation (count, sum, mean, min, max) of
  one entity's events over a sliding event-time window ending at the
  transaction, *including it*: the window is ``(t - n, t]``. Min and max
  apply to transaction fields only; every aggregation of an empty window is 0. With a label
  delay ``d`` the window is ``(t - (n + d), t - d]`` and the events carry the
  fields of their label (``is_fraud``) when that label was known at ``t``
  (``labeled_at <= t``); an event whose label is not yet known counts with
  label fields 0.
* :class:`Ratio` — one aggregate divided by another of the same entity and
  window, with a default when the denominator is 0 (terminal risk).

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
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any

#: Fields of a transaction that aggregates may read.
TRANSACTION_FIELDS = frozenset({"amount"})
#: Fields a label contributes to label-delayed aggregates.
LABEL_FIELDS = frozenset({"is_fraud"})
#: Entity keys a transaction carries.
ENTITY_KEYS = frozenset({"customer_id", "terminal_id"})


class DefinitionError(ValueError):
    """A feature definition is invalid; the message says which and why."""


class Agg(StrEnum):
    """Aggregations over a window's events."""

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"


class RowKind(StrEnum):
    """Row-level derivations from the transaction itself."""

    FIELD = "field"  #: a numeric field as is (e.g. amount)
    WEEKEND = "weekend"  #: 1 if the event time (UTC) is a Saturday or Sunday
    NIGHT = "night"  #: 1 if the event hour (UTC) is <= ``night_end_hour``


def _check_name(name: str) -> None:
    if not name or not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise DefinitionError(f"feature name {name!r} must be an identifier (letters, digits, _)")


@dataclass(frozen=True)
class Entity:
    """What a window aggregates per: its name and the transaction field holding its id."""

    name: str
    key: str

    def __post_init__(self) -> None:
        if self.key not in ENTITY_KEYS:
            raise DefinitionError(
                f"entity {self.name!r}: key {self.key!r} is not a transaction entity field "
                f"({', '.join(sorted(ENTITY_KEYS))})"
            )


@dataclass(frozen=True)
class RowFeature:
    """A feature computed from the transaction alone."""

    name: str
    kind: RowKind
    field: str = "amount"
    night_end_hour: int = 6

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.kind is RowKind.FIELD and self.field not in TRANSACTION_FIELDS:
            raise DefinitionError(f"{self.name}: unknown transaction field {self.field!r}")
        if not 0 <= self.night_end_hour <= 23:
            raise DefinitionError(f"{self.name}: night_end_hour must be in 0..23")


@dataclass(frozen=True)
class WindowAggregate:
    """An aggregation of an entity's events over a sliding event-time window."""

    name: str
    entity: Entity
    agg: Agg
    window: timedelta
    field: str | None = None
    label_delay: timedelta | None = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.window <= timedelta(0):
            raise DefinitionError(f"{self.name}: window must be positive, got {self.window}")
        if self.label_delay is not None and self.label_delay < timedelta(0):
            raise DefinitionError(f"{self.name}: label_delay must be >= 0")
        if self.agg is Agg.COUNT:
            if self.field is not None:
                raise DefinitionError(f"{self.name}: count takes no field")
        elif self.field is None:
            raise DefinitionError(f"{self.name}: {self.agg} needs a field")
        elif self.field in LABEL_FIELDS:
            if self.agg in (Agg.MIN, Agg.MAX):
                raise DefinitionError(
                    f"{self.name}: {self.agg} of label field {self.field!r} is not meaningful "
                    "(use sum or mean: a fraud count or rate)"
                )
            if self.label_delay is None:
                raise DefinitionError(
                    f"{self.name}: label field {self.field!r} needs a label_delay "
                    "(labels are known only later than the transaction)"
                )
        elif self.field not in TRANSACTION_FIELDS:
            raise DefinitionError(f"{self.name}: unknown field {self.field!r}")

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
    """Canonical, JSON-able description of a feature (the input of the version hash)."""
    if isinstance(feature, RowFeature):
        return {"type": "row", "name": feature.name, "kind": str(feature.kind),
                "field": feature.field, "night_end_hour": feature.night_end_hour}
    if isinstance(feature, WindowAggregate):
        return {"type": "window", "name": feature.name, "entity": feature.entity.name,
                "key": feature.entity.key, "agg": str(feature.agg), "field": feature.field,
                "window_s": feature.window.total_seconds(),
                "label_delay_s": feature.delay.total_seconds()}
    return {"type": "ratio", "name": feature.name, "default": feature.default,
            "numerator": _describe(feature.numerator),
            "denominator": _describe(feature.denominator)}


@dataclass(frozen=True)
class FeatureSet:
    """A named, versioned list of features computed together for each transaction."""

    name: str
    features: Sequence[Feature]
    source_topic: str = "transactions"
    label_topic: str = "labels"
    description: str = ""
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

    @property
    def names(self) -> list[str]:
        """Feature names in declaration order (the model's input order)."""
        return list(self._names)

    @cached_property
    def version(self) -> str:
        """12 hex chars of the SHA-256 of the canonical definitions."""
        canonical = json.dumps([_describe(f) for f in self.features], sort_keys=True)
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

    def horizon(self, entity: Entity) -> timedelta:
        """How much history the engines must keep for ``entity``."""
        return max(
            (a.horizon for a in self.window_aggregates if a.entity == entity),
            default=timedelta(0),
        )

    def describe(self) -> list[dict[str, Any]]:
        """The canonical description (for docs, training-run lineage, Redis metadata)."""
        return [_describe(f) for f in self.features]
