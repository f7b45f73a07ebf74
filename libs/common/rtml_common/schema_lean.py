"""The hot-path decoder of a schema's records: :mod:`rtml_common.lean_decoding`, generated.

:func:`lean_decoder` states every constraint of an :class:`EventSchema` as a
msgspec ``Struct`` (:func:`wire_struct`: exact field set, string lengths or
the closed set of categories, finite numbers within bounds, strict integers
and booleans; a timestamp is a string read by
:func:`~rtml_common.lean_decoding.parse_utc`) and builds the schema's generated
pydantic event (:func:`~rtml_common.schema_models.event_model`) from what it
decoded without validating it again (``lean_decoding._event``).

The contract is lean_decoding's: never more lenient than the model. Anything
msgspec refuses (bad JSON, invalid UTF-8, a numeric string, ``1`` for a bool,
a value out of bounds or outside the categories, a missing or unknown field)
and any timestamp ``parse_utc`` leaves undecided goes to pydantic
(:func:`rtml_common.serde.decode`), which accepts it as the same event or
raises :class:`~rtml_common.serde.DecodeError` with its precise reason.
Records are thus accepted exactly when the model accepts them, with the same
error (``tests/test_schema_models.py`` pins it for the handbook's events and
the payments example).

The decoding function is generated Python source (one attribute read per
field, the timestamps parsed, the defaults filled only when a field was
absent), so a schema's decoder costs what the hand-written one did.

>>> from rtml_common.handbook import TRANSACTION_SCHEMA
>>> decode = lean_decoder(TRANSACTION_SCHEMA)
>>> tx = decode(b'{"transaction_id":"t1","event_time":"2018-04-01T14:00:00.5+02:00",'
...             b'"customer_id":"c1","amount":2.5}', [])
>>> tx.event_time.isoformat(), tx.currency, "currency" in tx.model_fields_set
('2018-04-01T12:00:00.500000+00:00', 'EUR', False)
>>> decode(b'{"transaction_id":"t1","event_time":"2018-04-01T12:00:00Z",'
...        b'"customer_id":"c1","amount":-1}', [])
Traceback (most recent call last):
...
rtml_common.serde.DecodeError: Transaction: amount: Input should be greater than or equal to 0
"""

from __future__ import annotations

import functools
import keyword
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar, overload

import msgspec
from msgspec import UNSET, UnsetType

from rtml_common.schema import EventSchema, Field, FieldType
from rtml_common.schema_models import (
    allowed_categories,
    event_model,
    integer_bounds,
    model_name,
)

if TYPE_CHECKING:
    from rtml_common.events import Event

E = TypeVar("E", bound="Event")
RecordHeaders = Sequence[tuple[str, bytes | None]]
#: ``(value, event_type) -> event``: what decides a record msgspec did not take.
Fallback = Callable[[bytes | None, type[Any]], Any]

_INT64 = (-(2**63), 2**63 - 1)


def _wire_type(field: Field) -> Any:
    """``field``'s constraints in msgspec's terms (a timestamp: its string)."""
    kind = field.type
    if kind is FieldType.STRING:
        if field.categories is not None:
            return Literal[allowed_categories(field)]
        return Annotated[str, msgspec.Meta(min_length=field.min_length,
                                           max_length=field.max_length)]
    if kind is FieldType.NUMBER:
        # A JSON number only, finite (msgspec refuses 1e999), compared as a float as pydantic does.
        return Annotated[float, msgspec.Meta(ge=field.minimum, le=field.maximum)]
    if kind is FieldType.INTEGER:
        # Bounds beyond 64 bits (msgspec's limit) are left to pydantic: refuse every value.
        low, high = integer_bounds(field)
        if any(b is not None and not _INT64[0] <= b <= _INT64[1] for b in (low, high)):
            return Annotated[int, msgspec.Meta(ge=1, le=0)]  # nothing: pydantic decides
        return Annotated[int, msgspec.Meta(ge=low, le=high)]
    if kind is FieldType.BOOLEAN:
        return bool
    return str  # a timestamp: see parse_utc


@functools.cache
def wire_struct(schema: EventSchema) -> type[msgspec.Struct]:
    """A msgspec ``Struct`` stating ``schema``'s constraints; ``UNSET`` = an absent optional.

    One per schema (cached), whichever decoder reads it.
    """
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for field in schema.fields:
        kind = _wire_type(field)
        if field.required:
            fields.append((field.name, kind))
        elif field.default is None:  # may be null: None, like the model
            fields.append((field.name, kind | UnsetType | None, UNSET))
        else:  # takes a default when absent, never null
            fields.append((field.name, kind | UnsetType, UNSET))
    return msgspec.defstruct(f"Wire{model_name(schema)}", fields,
                             forbid_unknown_fields=True, kw_only=True)


def _read(name: str) -> str:
    """The expression reading field ``name`` off the wire struct (a keyword is no attribute)."""
    return f"getattr(wire, {name!r})" if keyword.iskeyword(name) else f"wire.{name}"


def _source(schema: EventSchema) -> str:
    """The decoding function of ``schema``'s records, as Python source (names are identifiers)."""
    lines = ["def decode(value, headers):",
             "    if value is None:",
             "        return _fallback(value, _model)  # a tombstone: pydantic names it",
             "    _check_version(headers)  # raises DecodeError if incompatible",
             "    try:",
             "        wire = _decode_wire(value)",
             "    except _REFUSALS:",
             "        return _fallback(value, _model)  # pydantic decides, and names the problem"]
    optional = []
    for field in schema.fields:
        local = f"f_{field.name}"
        if field.type is FieldType.TIMESTAMP:
            indent, read = "    ", _read(field.name)
            if not field.required:  # parsed only when present and not null
                lines += [f"    {local} = {read}",
                          f"    if {local} is not None and {local} is not _UNSET:"]
                indent, read = "        ", local
            lines += [f"{indent}{local} = _parse_utc({read})",
                      f"{indent}if {local} is None:",
                      f"{indent}    return _fallback(value, _model)"]
        elif not field.required:
            lines.append(f"    {local} = {_read(field.name)}")
        if not field.required:
            optional.append(local)
    entries = ", ".join(
        f"{field.name!r}: "
        + (f"f_{field.name}" if field.type is FieldType.TIMESTAMP or not field.required
           else _read(field.name))
        for field in schema.fields)
    lines.append(f"    values = {{{entries}}}")
    if optional:
        absent = " or ".join(f"{local} is _UNSET" for local in optional)
        lines += [f"    if {absent}:",
                  "        return _event(_model, values, _fill_defaults(_model, values))"]
    lines.append("    return _event(_model, values, _all_fields.copy())")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class LeanDecoder(Generic[E]):
    """A schema's record decoder: call it as ``decoder(value, headers) -> event``."""

    schema: EventSchema
    model: type[E]
    #: The msgspec Struct of the schema (:func:`wire_struct`), for consumers reading fields.
    wire: type[msgspec.Struct]
    #: Bytes -> wire struct; raises one of ``lean_decoding.WIRE_REFUSALS`` if msgspec refuses.
    decode_wire: Callable[[bytes], Any]
    #: :func:`~rtml_common.lean_decoding.version_gate` of the model.
    check_version: Callable[[RecordHeaders], bool]
    decode: Callable[[bytes | None, RecordHeaders], E]
    source: str

    def __call__(self, value: bytes | None, headers: RecordHeaders) -> E:
        return self.decode(value, headers)


_decoders: dict[tuple[EventSchema, Any, Any], LeanDecoder[Any]] = {}
_lock = threading.RLock()


@overload
def lean_decoder(schema: EventSchema, model: None = None,
                 fallback: Fallback | None = None) -> LeanDecoder[Event]: ...
@overload
def lean_decoder(schema: EventSchema, model: type[E],
                 fallback: Fallback | None = None) -> LeanDecoder[E]: ...
def lean_decoder(schema: EventSchema, model: type[E] | None = None,
                 fallback: Fallback | None = None) -> LeanDecoder[Any]:
    """The lean decoder of ``schema``'s records, building ``model`` (its generated event).

    ``model`` must state exactly the schema's fields (default:
    ``event_model(schema)``); ``fallback(value, model)`` decides what msgspec
    did not take (default: :func:`rtml_common.serde.decode`).
    """
    key = (schema, model, fallback)
    decoder = _decoders.get(key)
    if decoder is None:
        # lean_decoding first: it builds the handbook's decoders with this when imported.
        import rtml_common.lean_decoding  # noqa: F401

        with _lock:
            decoder = _decoders.get(key)
            if decoder is None:
                decoder = _decoders[key] = _build(schema, model, fallback)
    return decoder


def _build(schema: EventSchema, model: type[Any] | None,
           fallback: Fallback | None) -> LeanDecoder[Any]:
    # Imported here: events.py builds the handbook's models with schema_models, and
    # lean_decoding / serde import events.
    from rtml_common import lean_decoding
    from rtml_common.serde import decode

    model = event_model(schema) if model is None else model
    wire = wire_struct(schema)
    lean_decoding._require_plain(model, wire)
    if list(model.model_fields) != list(wire.__struct_fields__):
        raise TypeError(f"{model.__name__} must state {schema.name!r}'s fields in its order")
    decode_wire = msgspec.json.Decoder(wire).decode
    check_version = lean_decoding.version_gate(model)
    closure = {"_model": model, "_decode_wire": decode_wire, "_check_version": check_version,
               "_fallback": decode if fallback is None else fallback,
               "_REFUSALS": lean_decoding.WIRE_REFUSALS, "_parse_utc": lean_decoding.parse_utc,
               "_event": lean_decoding._event, "_fill_defaults": lean_decoding._fill_defaults,
               "_UNSET": UNSET, "_all_fields": set(model.model_fields)}
    source = _source(schema)
    # The constants are closure cells of a factory, read as fast as locals.
    factory = ("def factory(" + ", ".join(closure) + "):\n"
               + "".join(f"    {line}\n" for line in source.splitlines())
               + "    return decode\n")
    namespace: dict[str, Any] = {}
    exec(compile(factory, f"<lean decoder of {schema.name}>", "exec"), namespace)
    function = namespace["factory"](**closure)
    function.__qualname__ = f"lean_decoder({schema.name})"
    return LeanDecoder(schema=schema, model=model, wire=wire, decode_wire=decode_wire,
                       check_version=check_version, decode=function, source=source)
