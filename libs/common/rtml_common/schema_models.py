"""Pydantic events and JSON Schemas generated from an :class:`~rtml_common.schema.EventSchema`.

One declaration, every artefact: :func:`event_model` builds the strict,
frozen pydantic event a schema describes, :func:`json_schema` its JSON Schema
(what non-Python producers read) and :func:`~rtml_common.schema_lean.lean_decoder`
its hot-path msgspec decoder, so a field added to the schema reaches the
validator, the decoder and the contract together, or none of them.

The generated fields mean what the hand-written handbook events mean
(:mod:`rtml_common.events`; the tests prove the generated ``Transaction`` and
``Label`` accept and refuse the same records with the same messages):

* ``string``: a ``str`` of ``min_length`` to ``max_length`` characters; with
  ``categories``, one of the declared values (refused with a message listing
  them);
* ``number``: a strict, finite JSON number (never ``"12.5"`` or ``true``) within
  the bounds; ``integer``: a strict integer (never ``2.0``) within them;
* ``boolean``: a strict JSON boolean (never ``1`` or ``"yes"``);
* ``timestamp``: :data:`rtml_common.events.UtcDatetime` (an RFC 3339 string,
  timezone-aware, normalised to UTC);
* an optional field without a default may be absent or ``null`` (None); one with
  a default may be absent (the default), never ``null``.

Models are cached per schema: asking twice gives the same class, so
``isinstance`` and the lean decoder agree with every other user of the schema.

>>> from rtml_common.schema import EventSchema, Field, FieldType
>>> refund = EventSchema(
...     name="card_refund", topic="refunds", id_field="refund_id", event_time="at",
...     partition_key="card",
...     fields=[Field("refund_id", FieldType.STRING, max_length=64),
...             Field("at", FieldType.TIMESTAMP), Field("card", FieldType.STRING),
...             Field("amount", FieldType.NUMBER, minimum=0),
...             Field("channel", FieldType.STRING, categories=("web", "pos"), required=False)])
>>> Refund = event_model(refund)
>>> Refund.__name__, Refund.schema_version
('CardRefund', '1.0')
>>> r = Refund.model_validate_json(b'{"refund_id":"r1","at":"2018-04-01T14:00:00+02:00",'
...                                b'"card":"c1","amount":3}')
>>> r.at.isoformat(), r.amount, r.channel
('2018-04-01T12:00:00+00:00', 3.0, None)
>>> Refund.model_validate_json(b'{"refund_id":"r1","at":"2018-04-01T12:00:00Z",'
...                            b'"card":"c1","amount":3,"channel":"app"}')
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for CardRefund
channel
  Input should be 'web' or 'pos' [type=literal_error, input_value='app', input_type=str]
...
>>> json_schema(refund)["properties"]["channel"]["anyOf"][0]
{'enum': ['web', 'pos'], 'type': 'string'}
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, overload

from pydantic import Field as ModelField
from pydantic import Strict

from rtml_common.schema import EventSchema, Field, FieldType

if TYPE_CHECKING:
    from rtml_common.events import Event
    from rtml_common.schema_lean import Fallback, LeanDecoder

E = TypeVar("E", bound="Event")

__all__ = ["event_model", "json_schema", "lean_decoder", "model_name"]

_models: dict[EventSchema, type[Event]] = {}
_lock = threading.RLock()


def model_name(schema: EventSchema) -> str:
    """The generated class's name: the schema name in CamelCase (``card_refund`` -> ``CardRefund``).

    It is what :mod:`rtml_common.serde` prefixes refusals with and what the
    ``rtml-event-type`` header carries, so the handbook's ``transaction`` and
    ``label`` give ``Transaction`` and ``Label``, as before.
    """
    return "".join(part[:1].upper() + part[1:] for part in schema.name.split("_"))


def allowed_categories(field: Field) -> tuple[str, ...]:
    """A categorical field's declared values that its length bounds also allow."""
    assert field.categories is not None
    return tuple(c for c in field.categories if field.accepts(c))


def integer_bounds(field: Field) -> tuple[int | None, int | None]:
    """An integer field's bounds as the integers they admit (``minimum=-2.5`` -> ``-2``).

    Pydantic's integer bounds must be integers; the same values pass either way.
    """
    low = None if field.minimum is None else math.ceil(field.minimum)
    high = None if field.maximum is None else math.floor(field.maximum)
    return low, high


def _value_type(field: Field) -> Any:
    """The annotation of one present, non-null value of ``field``."""
    kind = field.type
    if kind is FieldType.STRING:
        if field.categories is not None:
            allowed = allowed_categories(field)
            if not allowed:
                raise ValueError(f"field {field.name!r}: no category fits its length bounds")
            return Literal[allowed]
        return Annotated[str, ModelField(min_length=field.min_length,
                                         max_length=field.max_length)]
    if kind is FieldType.NUMBER:
        return Annotated[float, Strict(), ModelField(ge=field.minimum, le=field.maximum,
                                                     allow_inf_nan=False)]
    if kind is FieldType.INTEGER:
        low, high = integer_bounds(field)
        return Annotated[int, Strict(), ModelField(ge=low, le=high)]
    if kind is FieldType.BOOLEAN:
        return Annotated[bool, Strict()]
    from rtml_common.events import UtcDatetime  # here: events may build its own with us

    return UtcDatetime


def model_field(field: Field) -> tuple[Any, Any]:
    """``(annotation, FieldInfo)`` of ``field`` in the generated model."""
    annotation = _value_type(field)
    description = field.description or None
    if field.required:
        return annotation, ModelField(description=description)
    if field.default is None:
        return annotation | None, ModelField(default=None, description=description)
    return annotation, ModelField(default=field.default, description=description)


def _build(schema: EventSchema, module: str) -> type[Event]:
    from rtml_common.events import Event

    name = model_name(schema)
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__module__": module, "__qualname__": name,
                                 "__doc__": schema.description or None,
                                 "__annotations__": annotations,
                                 "schema_version": schema.schema_version}
    for field in schema.fields:
        if hasattr(Event, field.name):  # pydantic would only warn, and the field would shadow it
            raise ValueError(f"schema {schema.name!r}: field {field.name!r} is a name events "
                             "already use (a pydantic model attribute); rename the field")
        annotations[field.name], namespace[field.name] = model_field(field)
    metaclass: Any = type(Event)  # pydantic's ModelMetaclass: builds the validators
    model: type[Event] = metaclass(name, (Event,), namespace)
    return model


def event_model(schema: EventSchema, *, module: str = __name__) -> type[Event]:
    """The strict, frozen pydantic event of ``schema`` (cached: one class per schema).

    ``module`` is where the class says it lives (its ``__module__``: reprs,
    pickling); it counts when the class is first built, which for the handbook's
    events is :mod:`rtml_common.events` itself.
    """
    model = _models.get(schema)
    if model is None:
        # events first: it builds the handbook's models (in its module) when imported.
        import rtml_common.events  # noqa: F401

        with _lock:
            model = _models.get(schema)
            if model is None:
                model = _models[schema] = _build(schema, module)
    return model


def json_schema(schema: EventSchema) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12 vocabulary, as pydantic writes it) of ``schema``'s events."""
    return event_model(schema).model_json_schema(mode="validation")




@overload
def lean_decoder(schema: EventSchema, model: None = None,
                 fallback: Fallback | None = None) -> LeanDecoder[Event]: ...
@overload
def lean_decoder(schema: EventSchema, model: type[E],
                 fallback: Fallback | None = None) -> LeanDecoder[E]: ...
def lean_decoder(schema: EventSchema, model: type[E] | None = None,
                 fallback: Fallback | None = None) -> LeanDecoder[Any]:
    """The hot-path msgspec decoder of ``schema``'s records: see :mod:`rtml_common.schema_lean`."""
    from rtml_common import schema_lean  # it builds on this module

    return schema_lean.lean_decoder(schema, model, fallback)
