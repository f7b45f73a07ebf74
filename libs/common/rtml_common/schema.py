"""Event schemas as data: the one declaration of what an event on a topic carries.

A user's payments carry what their business needs (a device, an IP, a merchant
category, a country); the platform reads those fields only through an
:class:`EventSchema`. Validators, hot-path decoders, JSON Schemas, feature
definitions and request models are *derived* from it, never written beside it,
so a field added to the schema reaches every one of them or none.

A schema names:

* its fields (:class:`Field`): a name, a :class:`FieldType`, whether it is
  required, and the bounds a value must respect (numbers), its length or its
  closed set of categories (strings);
* the field holding the event time (a ``timestamp``), the one holding the
  event's unique id (the dedupe key) and the partition key (the field Kafka
  records are keyed by, so one key's events stay in order).

Declarations validate themselves on construction and raise
:class:`SchemaError` saying which field is wrong and why. :attr:`EventSchema.version`
hashes the canonical description, as feature-set versions hash definitions: a
changed schema changes every version derived from it.

>>> payments = EventSchema(
...     name="payment", topic="payments",
...     fields=[Field("payment_id", FieldType.STRING, max_length=64),
...             Field("at", FieldType.TIMESTAMP),
...             Field("card", FieldType.STRING, max_length=64),
...             Field("amount", FieldType.NUMBER, minimum=0),
...             Field("channel", FieldType.STRING, categories=("web", "app", "pos"),
...                   required=False)],
...     id_field="payment_id", event_time="at", partition_key="card")
>>> payments.field("channel").categories
('web', 'app', 'pos')
>>> [f.name for f in payments.numeric_fields]
['amount']
>>> len(payments.version)
12
>>> EventSchema(name="bad", topic="t", fields=[Field("id", FieldType.STRING)],
...             id_field="id", event_time="id", partition_key="id")
Traceback (most recent call last):
...
rtml_common.schema.SchemaError: schema 'bad': event_time 'id' must be a timestamp field, not string
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*").fullmatch
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}").fullmatch


class SchemaError(ValueError):
    """A schema declaration is invalid; the message names the schema, the field and why."""


class FieldType(StrEnum):
    """What kind of value a field holds (its JSON type on the wire)."""

    NUMBER = "number"  #: a finite JSON number (float)
    INTEGER = "integer"  #: a JSON integer
    BOOLEAN = "boolean"  #: a JSON boolean (never 0/1 or "true")
    STRING = "string"  #: a JSON string: an id, or a category when ``categories`` is set
    TIMESTAMP = "timestamp"  #: an RFC 3339 date-time string, timezone-aware, UTC inside

    @property
    def numeric(self) -> bool:
        """Whether aggregates such as sum, mean, min and max can read the field."""
        return self in (FieldType.NUMBER, FieldType.INTEGER, FieldType.BOOLEAN)


@dataclass(frozen=True)
class Field:
    """One field of an event: its type, whether it must be present, and its bounds.

    ``minimum`` / ``maximum`` bound numbers and integers (inclusive); ``max_length``
    bounds strings (``min_length`` defaults to 1: an empty id or category is a
    producer bug); ``categories`` closes a string field's values to a declared set
    (order kept: it is the encoding order of categorical features).
    """

    name: str
    type: FieldType
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None
    min_length: int = 1
    max_length: int | None = None
    categories: tuple[str, ...] | None = None
    default: Any = None
    description: str = ""

    def __post_init__(self) -> None:
        if not _IDENTIFIER(self.name):
            raise SchemaError(f"field name {self.name!r} must be an identifier "
                              "(a letter, then letters, digits or _)")
        where = f"field {self.name!r}"
        if not isinstance(self.type, FieldType):
            try:
                object.__setattr__(self, "type", FieldType(self.type))
            except ValueError:
                kinds = ", ".join(t.value for t in FieldType)
                raise SchemaError(f"{where}: unknown type {self.type!r} ({kinds})") from None
        bounded = self.minimum is not None or self.maximum is not None
        if bounded and self.type not in (FieldType.NUMBER, FieldType.INTEGER):
            raise SchemaError(f"{where}: minimum/maximum apply to numbers, not {self.type}")
        for bound in (self.minimum, self.maximum):
            if bound is not None and not (isinstance(bound, int | float)
                                          and not isinstance(bound, bool)
                                          and math.isfinite(bound)):
                raise SchemaError(f"{where}: bounds must be finite numbers, got {bound!r}")
        if (self.minimum is not None and self.maximum is not None
                and self.minimum > self.maximum):
            raise SchemaError(f"{where}: minimum {self.minimum} > maximum {self.maximum}")
        if self.type is not FieldType.STRING:
            if self.max_length is not None or self.categories is not None:
                raise SchemaError(f"{where}: max_length/categories apply to strings, "
                                  f"not {self.type}")
        else:
            if self.min_length < 0 or (self.max_length is not None
                                       and self.max_length < max(self.min_length, 1)):
                raise SchemaError(f"{where}: need 0 <= min_length <= max_length, max_length >= 1")
            if self.categories is not None:
                categories = tuple(self.categories)
                if not categories or not all(isinstance(c, str) and c for c in categories):
                    raise SchemaError(f"{where}: categories must be non-empty strings")
                if len(set(categories)) != len(categories):
                    raise SchemaError(f"{where}: categories repeat a value")
                object.__setattr__(self, "categories", categories)
        if self.default is not None:
            if self.required:
                raise SchemaError(f"{where}: a required field takes no default")
            if not self.accepts(self.default):
                raise SchemaError(f"{where}: default {self.default!r} is not a valid value")

    @property
    def categorical(self) -> bool:
        """A string field whose values are a declared, closed set of categories."""
        return self.categories is not None

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` (a decoded Python value) is valid for this field.

        The generated validators are the authority on the wire; this is the
        same rule for Python values (defaults, simulator output, tests).
        """
        if self.type is FieldType.BOOLEAN:
            return isinstance(value, bool)
        if self.type in (FieldType.NUMBER, FieldType.INTEGER):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            if self.type is FieldType.INTEGER and not isinstance(value, int):
                return False
            if not math.isfinite(value):
                return False
            return ((self.minimum is None or value >= self.minimum)
                    and (self.maximum is None or value <= self.maximum))
        if self.type is FieldType.STRING:
            if not isinstance(value, str) or len(value) < self.min_length:
                return False
            if self.max_length is not None and len(value) > self.max_length:
                return False
            return self.categories is None or value in self.categories
        return False  # timestamps: checked by the generated validators

    def describe(self) -> dict[str, Any]:
        """Canonical, JSON-able description (input of the schema version)."""
        return {"name": self.name, "type": self.type.value, "required": self.required,
                "minimum": self.minimum, "maximum": self.maximum,
                "min_length": self.min_length, "max_length": self.max_length,
                "categories": list(self.categories) if self.categories is not None else None,
                "default": self.default}


@dataclass(frozen=True)
class EventSchema:
    """The fields of the events on one topic, and which of them play which role."""

    name: str
    topic: str
    fields: Sequence[Field]
    id_field: str
    event_time: str
    partition_key: str
    #: Semantic version written into the ``rtml-schema-version`` header.
    schema_version: str = "1.0"
    description: str = ""
    _by_name: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _IDENTIFIER(self.name):
            raise SchemaError(f"schema name {self.name!r} must be an identifier")
        where = f"schema {self.name!r}"
        if not _TOPIC(self.topic):
            raise SchemaError(f"{where}: topic {self.topic!r} is not a valid Kafka topic name")
        if not re.fullmatch(r"[0-9]+\.[0-9]+", self.schema_version):
            raise SchemaError(f"{where}: schema_version {self.schema_version!r} must be "
                              "MAJOR.MINOR")
        fields = tuple(self.fields)
        if not fields or not all(isinstance(f, Field) for f in fields):
            raise SchemaError(f"{where}: fields must be a non-empty list of Field")
        by_name: dict[str, Field] = {}
        for f in fields:
            if f.name in by_name:
                raise SchemaError(f"{where}: field {f.name!r} is declared twice")
            by_name[f.name] = f
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "_by_name", by_name)
        self._require_role("id_field", self.id_field, FieldType.STRING)
        self._require_role("event_time", self.event_time, FieldType.TIMESTAMP)
        self._require_role("partition_key", self.partition_key, FieldType.STRING)

    def _require_role(self, role: str, name: str, kind: FieldType) -> None:
        where = f"schema {self.name!r}"
        declared = self._by_name.get(name)
        if declared is None:
            raise SchemaError(f"{where}: {role} {name!r} is not a declared field "
                              f"({', '.join(self._by_name)})")
        if declared.type is not kind:
            raise SchemaError(f"{where}: {role} {name!r} must be a {kind} field, "
                              f"not {declared.type}")
        if not declared.required:
            raise SchemaError(f"{where}: {role} {name!r} must be required")

    def field(self, name: str) -> Field:
        """The declared field called ``name`` (:class:`SchemaError` if there is none)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise SchemaError(f"schema {self.name!r} has no field {name!r} "
                              f"({', '.join(self._by_name)})") from None

    def has(self, name: str) -> bool:
        return name in self._by_name

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    @property
    def numeric_fields(self) -> list[Field]:
        """Fields aggregates can sum, average and bound (numbers, integers, booleans)."""
        return [f for f in self.fields if f.type in (FieldType.NUMBER, FieldType.INTEGER)]

    @property
    def key_fields(self) -> list[Field]:
        """Fields an entity can be keyed by (strings: ids and categories)."""
        return [f for f in self.fields if f.type is FieldType.STRING]

    def describe(self) -> dict[str, Any]:
        """Canonical, JSON-able description (docs, lineage, the version hash)."""
        return {"name": self.name, "topic": self.topic, "schema_version": self.schema_version,
                "id_field": self.id_field, "event_time": self.event_time,
                "partition_key": self.partition_key,
                "fields": [f.describe() for f in self.fields]}

    @cached_property
    def version(self) -> str:
        """12 hex chars of the SHA-256 of the canonical description."""
        canonical = json.dumps(self.describe(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]
