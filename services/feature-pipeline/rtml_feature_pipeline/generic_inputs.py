"""What the feature worker reads of an event of a feature set's own schema (non-classic sets).

A ``transactions`` record of a set whose schema is not the handbook's (or whose
definitions the classic computer cannot compute) is decoded with the schema's
generated lean decoder (:func:`rtml_common.schema_lean.lean_decoder`): msgspec
states every constraint of the :class:`~rtml_common.schema.EventSchema`, and
whatever it does not take is decided by the schema's strict pydantic event,
which accepts it or raises :class:`~rtml_common.serde.DecodeError` naming the
field (``payment: merchant_category: Input should be 'grocery', ...``). The
consumer loop dead-letters such a record to ``transactions.dlq`` with that
reason, exactly as the handbook decoders' refusals.

:class:`GenericInput` keeps the decoded event's fields (the mapping the
:class:`~rtml_features.stream_generic.GenericStreamingComputer` reads), its id
and its event time in epoch milliseconds (what the worker sorts a batch by and
the event-time guard checks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from rtml_common.events import Event
from rtml_common.lean_decoding import RecordHeaders
from rtml_common.schema import EventSchema
from rtml_common.schema_lean import lean_decoder
from rtml_common.serde import dumps
from rtml_common.tracing import trace_headers
from rtml_features.rows import epoch_ms


class GenericInput(msgspec.Struct, gc=False):
    """An event of the served schema as the worker applies it (treat as read-only)."""

    transaction_id: str
    time_ms: int
    #: The event's fields by name (the event time as an aware datetime).
    fields: dict[str, Any]
    #: The record as it was read: what the late path and the quarantine forward.
    raw: bytes | None = None
    #: The decoded event (what ``raw`` re-encodes to when absent).
    event: Event | None = None
    #: As :attr:`rtml_feature_pipeline.inputs.TransactionInput.traced`.
    traced: bool = True

    def record_bytes(self) -> bytes:
        """The event as a record value: as read, else re-encoded."""
        if self.raw is not None:
            return self.raw
        if self.event is None:
            raise ValueError(f"event {self.transaction_id}: neither record nor event kept")
        return dumps(self.event.model_dump())


def generic_input(schema: EventSchema, event: Event, raw: bytes | None = None,
                  traced: bool = True) -> GenericInput:
    """The worker's input for a decoded event of ``schema``."""
    fields = dict(event.__dict__)
    return GenericInput(str(fields[schema.id_field]), epoch_ms(fields[schema.event_time]),
                        fields, raw, event, traced)


def generic_decoder(schema: EventSchema
                    ) -> Callable[[bytes | None, RecordHeaders], GenericInput]:
    """The decoder of ``schema``'s records into :class:`GenericInput`; DecodeError if invalid."""
    decode = lean_decoder(schema)
    id_field, time_field = schema.id_field, schema.event_time

    def decode_input(value: bytes | None, headers: RecordHeaders) -> GenericInput:
        event = decode(value, headers)
        fields = dict(event.__dict__)
        traced = bool(headers) and bool(trace_headers(headers))
        return GenericInput(str(fields[id_field]), epoch_ms(fields[time_field]), fields,
                            value, event, traced)

    decode_input.__qualname__ = f"generic_decoder({schema.name})"
    return decode_input
