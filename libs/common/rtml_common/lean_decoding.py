"""Lean decoders for ``transactions`` and ``labels`` records: the same events, for less CPU.

``serde.decode`` costs ~3.0 µs per transaction and ~3.9 µs per label here
(each datetime's UTC validator calls back into Python), about an eighth of the
feature worker's CPU; these decoders ~1.85 and ~2.3 µs (``parse_utc`` ~0.4 µs
a timestamp and building the event ~0.5 µs are most of it). They validate in
one C pass with msgspec — a ``Struct`` stating every constraint of
the schema: exact field set, id lengths, a finite amount in ``[0, MAX_AMOUNT]``,
a 3-character currency, a strict bool, a non-negative scenario — read each
timestamp through :func:`parse_utc`, and build the very pydantic event the
worker reads (``==``, same ``model_fields_set``, same ``encode`` bytes)
without validating it again.

Why not ``model_construct``: it is a Python loop over the fields that costs as
much as validating (~2.4 µs). :func:`_event` does only what ``model_construct``
ends up doing for these models (``__dict__`` in field order, the set fields,
no extra or private values), ~0.5 µs; :func:`_require_plain` refuses at import
a model that grows what that shortcut would skip (a post-init hook, private
attributes, extra fields, a field the wire struct does not know).

They are never *more lenient* than the schema: msgspec's types are as strict
as the events' (a number is a JSON number, a bool a JSON bool), its other
checks a subset of theirs, and anything it refuses (a numeric string, ``1`` for
a bool, an amount above the maximum, a timestamp spelling other than the
common RFC 3339 one, a missing required or an unknown field, invalid UTF-8,
bad JSON) goes to pydantic, which either accepts it — the same event (e.g. a
7-digit fraction, truncated) — or raises :class:`~rtml_common.serde.DecodeError`
with its precise reason, so the consumer loop dead-letters it. Records are thus
accepted exactly when the event type accepts them, and refused with the same
reason (``tests/test_lean_decoding.py`` pins both).

The decoders and their structs are generated from the handbook's schemas
(:func:`rtml_common.schema_lean.lean_decoder`, as for any user's schema); this
module keeps their shared pieces (:func:`parse_utc`, :func:`version_gate`,
:func:`_event`) and the wire readers consumers use without building the event
(:func:`transaction_wire`, :func:`label_wire`).

>>> raw = (b'{"transaction_id":"t1","event_time":"2018-04-01T14:00:00.5+02:00",'
...        b'"customer_id":"c1","amount":2.5}')
>>> tx = decode_transaction(raw, [])
>>> tx.event_time.isoformat(), tx.currency, "currency" in tx.model_fields_set
('2018-04-01T12:00:00.500000+00:00', 'EUR', False)
>>> tx == Transaction.model_validate_json(raw)
True
>>> decode_transaction(raw.replace(b'2.5', b'-1'), [])
Traceback (most recent call last):
...
rtml_common.serde.DecodeError: Transaction: amount: Input should be greater than or equal to 0
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import msgspec
from msgspec import UNSET, UnsetType
from pydantic import BaseModel

from rtml_common.events import MAX_AMOUNT, Event, Label, Transaction
from rtml_common.handbook import LABEL_SCHEMA, TRANSACTION_SCHEMA
from rtml_common.schema_lean import lean_decoder
from rtml_common.serde import SCHEMA_VERSION_HEADER, check_schema_version, decode
from rtml_common.tracing import TRACEPARENT

E = TypeVar("E", bound=Event)
RecordHeaders = Sequence[tuple[str, bytes | None]]

#: What a msgspec decode raises for a record it will not take: it reads invalid UTF-8 with
#: ``bytes.decode`` (a ``UnicodeDecodeError``, not a ``msgspec.DecodeError``).
WIRE_REFUSALS = (msgspec.DecodeError, UnicodeDecodeError)

#: The RFC 3339 spelling ``datetime.fromisoformat`` and pydantic read to the same instant
#: (offset minutes 00-59: ``fromisoformat`` takes ``+00:60``, pydantic does not). Other
#: spellings go to pydantic; msgspec's own datetime would round a 7th fractional digit where
#: pydantic truncates.
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:[0-5]\d)",
                     re.ASCII)


_rfc3339 = RFC3339.fullmatch
_fromisoformat = datetime.fromisoformat


def parse_utc(text: str) -> datetime | None:
    """``text`` as pydantic's ``UtcDatetime`` reads it, or None to let pydantic decide."""
    size = len(text)
    if ((size == 25 or (size == 32 and text[19] == "."))
            and text[4:17:3] == "--T::" and text.endswith("+00:00")):
        # What producers write (``isoformat()`` of a UTC time, with or without
        # microseconds): the regex's verdict without running it (~0.14 µs of ~0.37), since
        # ``fromisoformat`` refuses any non-digit in the other places just as it would.
        # Pinned to the regex path by a test.
        try:
            return _fromisoformat(text)  # +00:00 reads as the UTC singleton
        except ValueError:
            return None
    if _rfc3339(text) is None:
        return None
    try:
        moment = _fromisoformat(text)
        # OverflowError: 0001-01-01T00:00:00+01:00 has no UTC value (pydantic raises it too).
        return moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    except (ValueError, OverflowError):  # e.g. February 30th: pydantic names it
        return None


def version_gate(event_type: type[Event]) -> Callable[[RecordHeaders], bool]:
    """:func:`~rtml_common.serde.check_schema_version` remembering compatible header values.

    Producers send the same few values over and over; only a new one is parsed.
    The check returns whether a ``traceparent`` header is present: its scan of the
    headers is made anyway, while they are in the CPU cache, so a consumer that runs
    traced records in a span need not scan every record's headers again (False:
    certainly untraced; True: read the context with :func:`rtml_common.tracing.trace_headers`).
    """
    compatible: set[bytes] = set()

    def check(headers: RecordHeaders) -> bool:
        declared = None
        traced = False
        for name, header in headers:  # header_value() inlined: the last one counts
            if name == SCHEMA_VERSION_HEADER:
                declared = header
            elif name == TRACEPARENT:
                traced = True
        if declared is not None and declared not in compatible:
            check_schema_version(event_type, headers)  # raises if incompatible
            if len(compatible) < 64:
                compatible.add(declared)
        return traced

    return check


_new = object.__new__
#: The setters of ``BaseModel``'s slots, called directly (~0.15 µs less than ``__setattr__``).
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def _event(event_type: type[E], values: dict[str, Any], fields_set: set[str]) -> E:
    """What ``event_type.model_construct`` builds from validated ``values``, 4x faster.

    ``values`` must hold every field, in the model's field order, like pydantic's own.
    """
    event = _new(event_type)
    _set_dict(event, values)
    _set_fields_set(event, fields_set)
    _set_extra(event, None)
    _set_private(event, None)
    return event


def _require_plain(event_type: type[Event], wire: type[msgspec.Struct]) -> None:
    """Refuse (at import) a model :func:`_event` would build differently from pydantic."""
    if (event_type.__pydantic_post_init__ or event_type.__private_attributes__
            or event_type.model_config.get("extra") == "allow"):
        raise TypeError(f"{event_type.__name__} needs model_construct: lean decoding must "
                        "learn its post-init hook, private attributes or extra fields")
    if set(wire.__struct_fields__) != set(event_type.model_fields):
        raise TypeError(f"{wire.__name__} must state exactly {event_type.__name__}'s fields")


def _fill_defaults(event_type: type[Event], values: dict[str, Any]) -> set[str]:
    """Replace absent (``UNSET``) values by their defaults; the names of the others."""
    fields_set = set()
    for name, value in values.items():
        if value is UNSET:
            values[name] = event_type.model_fields[name].get_default(call_default_factory=True)
        else:
            fields_set.add(name)
    return fields_set


EntityId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]


def _pydantic(value: bytes | None, event_type: type[E]) -> E:
    """What decides a record msgspec did not take (``decode`` looked up at each call)."""
    return decode(value, event_type)


#: The handbook's decoders, generated from its schemas (rtml_common.schema_lean).
_TRANSACTIONS = lean_decoder(TRANSACTION_SCHEMA, Transaction, _pydantic)
_LABELS = lean_decoder(LABEL_SCHEMA, Label, _pydantic)

if TYPE_CHECKING:

    class _WireTransaction(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
        """``Transaction``'s constraints in msgspec's terms; UNSET = absent (not in fields set).

        What type checkers read; the generated struct (``schema_lean.wire_struct``) is held
        equal to it by ``tests/test_schema_models.py``.
        """

        transaction_id: EntityId
        event_time: str  # see parse_utc
        customer_id: EntityId
        terminal_id: EntityId | UnsetType | None = UNSET
        #: Finite (msgspec refuses 1e999: no inf), a JSON number (not a string, not a bool).
        amount: Annotated[float, msgspec.Meta(ge=0, le=MAX_AMOUNT)]
        currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)] | UnsetType = UNSET

    class _WireLabel(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
        """``Label``'s constraints in msgspec's terms; UNSET = absent (not in fields set)."""

        transaction_id: EntityId
        customer_id: EntityId
        terminal_id: EntityId | UnsetType | None = UNSET
        transaction_time: str  # see parse_utc
        labeled_at: str
        is_fraud: bool
        fraud_scenario: NonNegativeInt | UnsetType | None = UNSET

else:
    _WireTransaction = _TRANSACTIONS.wire
    _WireLabel = _LABELS.wire

_decode_transaction = _TRANSACTIONS.decode_wire
_decode_label = _LABELS.decode_wire
_check_transaction_version = _TRANSACTIONS.check_version
_check_label_version = _LABELS.check_version


W = TypeVar("W", bound=msgspec.Struct)


def wire_and_trace(value: bytes | None, headers: RecordHeaders,
                   check_version: Callable[[RecordHeaders], bool],
                   decode_wire: Callable[[bytes], W]) -> tuple[W, bool] | None:
    """The msgspec-validated record and whether it may be traced (see :func:`version_gate`),
    or None to let pydantic decide (and name the problem)."""
    if value is None:
        return None  # a tombstone: pydantic's decode names it
    traced = check_version(headers)  # raises DecodeError if incompatible
    try:
        return decode_wire(value), traced
    except WIRE_REFUSALS:
        return None


def wire_or_none(value: bytes | None, headers: RecordHeaders,
                 check_version: Callable[[RecordHeaders], bool],
                 decode_wire: Callable[[bytes], W]) -> W | None:
    """:func:`wire_and_trace`'s record alone."""
    read = wire_and_trace(value, headers, check_version, decode_wire)
    return None if read is None else read[0]


def transaction_wire(value: bytes | None,
                     headers: RecordHeaders) -> tuple[_WireTransaction, datetime, bool] | None:
    """A ``transactions`` record msgspec accepts, its UTC event time, and whether it may be
    traced (see :func:`version_gate`).

    None: pydantic must decide (it accepts another spelling, or names the problem).
    For consumers that read the fields without building the event.
    """
    read = wire_and_trace(value, headers, _check_transaction_version, _decode_transaction)
    if read is None:
        return None
    wire, traced = read
    event_time = parse_utc(wire.event_time)
    return None if event_time is None else (wire, event_time, traced)


def label_wire(value: bytes | None,
               headers: RecordHeaders) -> tuple[_WireLabel, datetime, datetime, bool] | None:
    """A ``labels`` record msgspec accepts, its transaction time and labeled-at (UTC), and
    whether it may be traced.

    None: pydantic must decide, as for :func:`transaction_wire`.
    """
    read = wire_and_trace(value, headers, _check_label_version, _decode_label)
    if read is None:
        return None
    wire, traced = read
    transaction_time = parse_utc(wire.transaction_time)
    labeled_at = parse_utc(wire.labeled_at)
    if transaction_time is None or labeled_at is None:
        return None
    return wire, transaction_time, labeled_at, traced


#: A ``transactions`` record as a :class:`Transaction`; :class:`DecodeError` if invalid.
decode_transaction: Callable[[bytes | None, RecordHeaders], Transaction] = _TRANSACTIONS.decode
#: A ``labels`` record as a :class:`Label`; :class:`DecodeError` if invalid.
decode_label: Callable[[bytes | None, RecordHeaders], Label] = _LABELS.decode
