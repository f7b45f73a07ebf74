"""Wire format: JSON values, schema version and event type in Kafka headers.

Why JSON: every producer (Java payment gateways, Go services, kcat in a
terminal) can write it, and the exported JSON Schemas (``libs/common/schemas``)
tell them exactly what to write. Why orjson for encoding: it serialises the
pydantic ``model_dump()`` dict in ~1.4 µs per transaction here, about 3x the
standard library's ``json``, and emits RFC 3339 datetimes natively. Decoding
goes through pydantic's Rust JSON parser (``model_validate_json``, ~2.4 µs),
which parses and validates in one pass; hot paths that trust their input can
use :func:`loads` (orjson, ~0.4 µs) and skip model construction.

The headers make a record self-describing without parsing its value:
``rtml-schema-version`` lets a consumer refuse a major version it does not
understand, and ``rtml-event-type`` names the pydantic model.

>>> from rtml_common.events import Transaction
>>> raw = (b'{"transaction_id":"1","event_time":"2018-04-01T00:00:00Z",'
...        b'"customer_id":"7","amount":3.5}')
>>> decode(raw, Transaction).amount
3.5
>>> decode(b'{"transaction_id":"1","amount":-2}', Transaction)
Traceback (most recent call last):
...
rtml_common.serde.DecodeError: Transaction: event_time: Field required; customer_id: ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import orjson
from pydantic import ValidationError

from rtml_common.events import Event

SCHEMA_VERSION_HEADER = "rtml-schema-version"
EVENT_TYPE_HEADER = "rtml-event-type"
CONTENT_TYPE_HEADER = "content-type"
CONTENT_TYPE_JSON = b"application/json"

Headers = list[tuple[str, bytes]]
E = TypeVar("E", bound=Event)


class DecodeError(ValueError):
    """A record's bytes are not a valid event; the message is the dead-letter reason."""


def encode(event: Event) -> bytes:
    """Serialize an event to JSON bytes (see the module docstring for why orjson)."""
    return orjson.dumps(event.model_dump())


def headers_for(event_type: type[Event]) -> Headers:
    """Kafka headers describing ``event_type``; build once per type on hot paths."""
    return [
        (SCHEMA_VERSION_HEADER, event_type.schema_version.encode()),
        (EVENT_TYPE_HEADER, event_type.__name__.encode()),
        (CONTENT_TYPE_HEADER, CONTENT_TYPE_JSON),
    ]


def header_value(headers: Sequence[tuple[str, bytes | None]] | None, name: str) -> bytes | None:
    """The last value of header ``name`` (Kafka allows repeats), or None."""
    found: bytes | None = None
    for key, value in headers or ():
        if key == name:
            found = value
    return found


def check_schema_version(
    event_type: type[Event], headers: Sequence[tuple[str, bytes | None]] | None
) -> None:
    """Refuse a record whose declared major schema version differs from ours.

    A missing header is accepted: non-Python producers may not set it, and the
    value is still fully validated against the schema.
    """
    declared = header_value(headers, SCHEMA_VERSION_HEADER)
    if declared is None:
        return
    ours = event_type.schema_version.split(".", 1)[0]
    theirs = declared.decode(errors="replace").split(".", 1)[0]
    if theirs != ours:
        raise DecodeError(
            f"{event_type.__name__}: schema version {declared.decode(errors='replace')} "
            f"is not compatible with {event_type.schema_version}"
        )


def decode(
    value: bytes | None,
    event_type: type[E],
    headers: Sequence[tuple[str, bytes | None]] | None = None,
) -> E:
    """Parse and validate one record value; raise :class:`DecodeError` with a precise reason."""
    if value is None:
        raise DecodeError(f"{event_type.__name__}: empty record value (tombstone)")
    check_schema_version(event_type, headers)
    try:
        return event_type.model_validate_json(value)
    except ValidationError as exc:
        raise DecodeError(f"{event_type.__name__}: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """A compact one-line reason: ``field: message; field: message``."""
    parts = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"]) or "value"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def loads(value: bytes) -> Any:
    """Fast JSON parse without validation, for trusted hot paths."""
    return orjson.loads(value)


def dumps(value: Any) -> bytes:
    """Fast JSON serialization of plain data."""
    return orjson.dumps(value)
