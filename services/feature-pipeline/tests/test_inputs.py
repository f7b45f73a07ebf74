"""The worker's inputs are read exactly as the event types read the same records."""

from __future__ import annotations

import doctest
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from msgspec import structs

from rtml_common.events import Label, Transaction
from rtml_common.serde import DecodeError, decode, headers_for
from rtml_feature_pipeline import inputs
from rtml_feature_pipeline.inputs import (
    LabelInput,
    TransactionInput,
    as_input,
    decode_label_input,
    decode_transaction_input,
)
from rtml_features.rows import epoch_ms

T0 = datetime(2018, 4, 1, 12, 30, 0, 123456, tzinfo=UTC)
#: Valid records as the producers write them; the cases below vary one field at a time.
TX = Transaction(transaction_id="tx-1", event_time=T0, customer_id="c1", terminal_id="t1",
                 amount=57.16).model_dump(mode="json")
LABEL = Label(transaction_id="tx-1", customer_id="c1", terminal_id="t1", transaction_time=T0,
              labeled_at=T0 + timedelta(days=18), is_fraud=True,
              fraud_scenario=2).model_dump(mode="json")
DROP = object()
#: Spellings on the fast path, off it (pydantic decides and accepts) and refused.
STAMPS = ["2018-04-01T12:30:00Z", "2018-04-01T12:30:00.5+02:00", "1969-12-31T23:59:59.9999Z",
          "2018-04-01t12:30:00.9999999z", "2018-04-01 12:30:00Z", "1522585800",
          "2018-04-01T12:30:00", "2018-02-30T12:30:00Z", "2018-04-01T12:30:00+00:60",
          "0001-01-01T00:00:00+01:00"]


def record(fields: dict[str, Any], **changes: object) -> bytes:
    kept = {k: v for k, v in {**fields, **changes}.items() if v is not DROP}
    return json.dumps(kept, separators=(",", ":")).encode()


def outcome(read: Any) -> tuple[str, Any]:
    try:
        return "accepted", read()
    except (DecodeError, OverflowError) as exc:
        return type(exc).__name__, str(exc)


TRANSACTIONS = [
    record(TX), record(TX, terminal_id=DROP, currency=DROP), record(TX, terminal_id=None),
    record(TX, amount=0), record(TX, amount="12.5"), record(TX, amount=-1.0),
    record(TX, amount=True), record(TX, amount=1e308), record(TX, amount=1e9),
    record(TX, transaction_id=""), record(TX, extra=1), record(TX, amount=DROP), b"{not json",
    record(TX).replace(b"tx-1", b"\xff\xfe"), None,
    *(record(TX, event_time=stamp) for stamp in STAMPS),
]
LABELS = [
    record(LABEL), record(LABEL, terminal_id=DROP, fraud_scenario=DROP),
    record(LABEL, is_fraud=False), record(LABEL, is_fraud=1), record(LABEL, is_fraud="maybe"),
    record(LABEL, customer_id=7), record(LABEL, labeled_at=DROP), b"[1, 2]", None,
    *(record(LABEL, transaction_time=stamp) for stamp in STAMPS),
    *(record(LABEL, labeled_at=stamp) for stamp in STAMPS),
]


def expected_input(event: Transaction | Label, value: bytes | None,
                   got: Any) -> TransactionInput | LabelInput:
    """The input the worker must get for a record pydantic reads as ``event``."""
    if isinstance(event, Label):
        return LabelInput(event.transaction_id, event.customer_id, event.terminal_id,
                          epoch_ms(event.transaction_time), epoch_ms(event.labeled_at),
                          event.is_fraud, got.traced, value,
                          got.event)  # the event is kept only when pydantic built it
    return TransactionInput(event.transaction_id, event.customer_id, event.terminal_id,
                            epoch_ms(event.event_time), event.amount, value,
                            got.event,  # the event is kept only when pydantic built it
                            got.traced)  # (the headers have no trace: pinned by a test below)


@pytest.mark.parametrize(("event_type", "decoder", "value"), [
    *((Transaction, decode_transaction_input, value) for value in TRANSACTIONS),
    *((Label, decode_label_input, value) for value in LABELS),
])
def test_inputs_accept_and_refuse_like_the_event_type(
        event_type: type[Transaction] | type[Label], decoder: Any, value: bytes | None) -> None:
    headers = headers_for(event_type)
    expected = outcome(lambda: decode(value, event_type, headers))
    got = outcome(lambda: decoder(value, headers))
    if expected[0] != "accepted":
        assert got == expected
        return
    assert got[0] == "accepted"
    assert got[1] == expected_input(expected[1], value, got[1])
    # The late path and the quarantine forward the record as read.
    assert got[1].record_bytes() == value


def test_an_incompatible_schema_version_is_refused() -> None:
    headers = [(name, b"99.0" if name == "rtml-schema-version" else value)
               for name, value in headers_for(Transaction)]
    assert any(name == "rtml-schema-version" for name, _ in headers)
    with pytest.raises(DecodeError, match=r"99\.0"):
        decode_transaction_input(record(TX), headers)


def test_events_from_other_engines_convert_to_the_same_inputs() -> None:
    tx = decode(record(TX), Transaction)
    converted = as_input(tx)
    assert isinstance(converted, TransactionInput)
    assert converted.time_ms == epoch_ms(tx.event_time) and converted.event is tx
    assert decode(converted.record_bytes(), Transaction) == tx  # re-encoded: no record kept
    label = decode(record(LABEL), Label)
    # Equal but for ``traced``: an event's converter cannot know (True), the decoder saw
    # no traceparent header (False).
    assert structs.replace(as_input(label), traced=False, raw=record(LABEL),
                           event=None) == decode_label_input(record(LABEL), [])
    assert decode(as_input(label).record_bytes(), Label) == label  # re-encoded: no record kept
    assert as_input(converted) is converted
    with pytest.raises(TypeError, match="not a transaction or a label"):
        as_input({"transaction_id": "x"})


def test_decoders_say_whether_a_trace_header_is_present() -> None:
    plain = headers_for(Transaction)
    traced = [*plain, ("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
    assert not decode_transaction_input(record(TX), plain).traced
    assert decode_transaction_input(record(TX), traced).traced
    assert not decode_label_input(record(LABEL), []).traced
    assert decode_label_input(record(LABEL), [("traceparent", b"x")]).traced
    # A tracestate alone is no trace context; the pydantic path cannot tell (True: look).
    assert not decode_transaction_input(record(TX), [("tracestate", b"k=v")]).traced
    assert decode_transaction_input(record(TX, event_time="2018-04-01T12:30:00.1234567Z"),
                                    plain).traced


def test_docstring_examples() -> None:
    result = doctest.testmod(inputs, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
