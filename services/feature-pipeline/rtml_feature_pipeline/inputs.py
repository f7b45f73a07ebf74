"""What the feature worker reads of a transaction or a label, decoded straight off the wire.

The worker needs five fields of a transaction and six of a label, with times
as epoch milliseconds. The Kafka engine's decoders produce exactly that
(:class:`TransactionInput`, :class:`LabelInput`) instead of the pydantic
event: building the event and then converting its datetimes cost ~1.5 µs a
record, a few percent of the worker's CPU at full rate.

Validation is not weakened: the fields come from
:func:`rtml_common.lean_decoding.transaction_wire` / ``label_wire`` (the same
msgspec check as the lean event decoders), and every record those leave to
pydantic is decoded by pydantic — which either accepts it (the input is then
read off the event) or raises :class:`~rtml_common.serde.DecodeError` with its
reason, so the consumer loop dead-letters it exactly as before.

Both engines decode with these (:data:`INPUT_DECODERS`); pydantic events
handed to the worker directly (tests) are converted by :func:`as_input`.

>>> raw = (b'{"transaction_id":"t1","event_time":"2018-04-01T14:00:00.5+02:00",'
...        b'"customer_id":"c1","amount":2.5}')
>>> tx = decode_transaction_input(raw, [])
>>> tx.transaction_id, tx.terminal_id, tx.time_ms, tx.amount
('t1', None, 1522584000500, 2.5)
>>> decode_transaction_input(raw.replace(b'2.5', b'-1'), [])
Traceback (most recent call last):
...
rtml_common.serde.DecodeError: Transaction: amount: Input should be greater than or equal to 0
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from msgspec import UNSET

from rtml_common.events import Event, Label, Transaction
from rtml_common.lean_decoding import RecordHeaders, label_wire, transaction_wire
from rtml_common.serde import decode, dumps
from rtml_features.rows import epoch_ms


class TransactionInput(msgspec.Struct, gc=False, repr_omit_defaults=True):
    """A transaction as the worker applies it (treat as read-only).

    A msgspec ``Struct`` for its C ``__init__`` (~0.1 µs; a slotted dataclass's ~0.3),
    one per record; ``gc=False``: it holds no cycles.
    """

    transaction_id: str
    customer_id: str
    terminal_id: str | None
    time_ms: int
    amount: float
    #: The record as it was read: what the late path forwards (None: re-encode ``event``).
    raw: bytes | None = None
    #: The decoded event, when one was built (pydantic fallback, other engines).
    event: Transaction | None = None
    #: False: the record has no ``traceparent`` header (no span to run it in). True: it
    #: may carry a trace context — or the input was built without looking (pydantic path).
    traced: bool = True

    def record_bytes(self) -> bytes:
        """The transaction as a record value: as read, else its event re-encoded."""
        if self.raw is not None:
            return self.raw
        if self.event is None:
            raise ValueError(f"transaction {self.transaction_id}: neither record nor event kept")
        return dumps(self.event.model_dump())


class LabelInput(msgspec.Struct, gc=False):
    """A label as the worker applies it (treat as read-only; a ``Struct`` as above)."""

    transaction_id: str
    customer_id: str
    terminal_id: str | None
    transaction_time_ms: int
    labeled_at_ms: int
    is_fraud: bool
    #: As :attr:`TransactionInput.traced`.
    traced: bool = True
    #: The record as it was read: what the quarantine dead-letters (None: re-encode ``event``).
    raw: bytes | None = None
    #: The decoded event, when one was built (pydantic fallback, other engines).
    event: Label | None = None

    def record_bytes(self) -> bytes:
        """The label as a record value: as read, else its event re-encoded."""
        if self.raw is not None:
            return self.raw
        if self.event is None:
            raise ValueError(f"label {self.transaction_id}: neither record nor event kept")
        return dumps(self.event.model_dump())


def decode_transaction_input(value: bytes | None, headers: RecordHeaders) -> TransactionInput:
    """A ``transactions`` record as a :class:`TransactionInput`; DecodeError if invalid."""
    read = transaction_wire(value, headers)
    if read is None:
        return transaction_input(decode(value, Transaction), value)  # pydantic decides
    wire, event_time, traced = read
    terminal_id = wire.terminal_id
    return TransactionInput(wire.transaction_id, wire.customer_id,
                            None if terminal_id is UNSET else terminal_id,
                            epoch_ms(event_time), wire.amount, value, traced=traced)


def decode_label_input(value: bytes | None, headers: RecordHeaders) -> LabelInput:
    """A ``labels`` record as a :class:`LabelInput`; DecodeError if invalid."""
    read = label_wire(value, headers)
    if read is None:
        return label_input(decode(value, Label), value)
    wire, transaction_time, labeled_at, traced = read
    terminal_id = wire.terminal_id
    return LabelInput(wire.transaction_id, wire.customer_id,
                      None if terminal_id is UNSET else terminal_id,
                      epoch_ms(transaction_time), epoch_ms(labeled_at), wire.is_fraud, traced,
                      value)


#: Event type -> the decoder of its records into the worker's input (both engines).
INPUT_DECODERS: dict[type[Event],
                     Callable[[bytes | None, RecordHeaders], TransactionInput | LabelInput]] = {
    Transaction: decode_transaction_input, Label: decode_label_input,
}


def transaction_input(event: Transaction, raw: bytes | None = None) -> TransactionInput:
    """The worker's input for a decoded transaction (``raw``: its record, if known)."""
    return TransactionInput(event.transaction_id, event.customer_id, event.terminal_id,
                            epoch_ms(event.event_time), event.amount, raw, event)


def label_input(event: Label, raw: bytes | None = None) -> LabelInput:
    """The worker's input for a decoded label (``raw``: its record, if known)."""
    return LabelInput(event.transaction_id, event.customer_id, event.terminal_id,
                      epoch_ms(event.transaction_time), epoch_ms(event.labeled_at),
                      event.is_fraud, raw=raw, event=event)


def as_input(value: object) -> TransactionInput | LabelInput:
    """An input as is, or the input of a decoded event; TypeError for anything else."""
    if isinstance(value, TransactionInput | LabelInput):
        return value
    if isinstance(value, Transaction):
        return transaction_input(value)
    if isinstance(value, Label):
        return label_input(value)
    raise TypeError(f"unexpected {type(value).__name__}: not a transaction or a label")
