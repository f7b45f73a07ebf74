"""Wire format: encode/decode round trips and precise failure reasons."""

from datetime import UTC, datetime

import orjson
import pytest

from rtml_common.events import Label, Transaction
from rtml_common.serde import (
    EVENT_TYPE_HEADER,
    SCHEMA_VERSION_HEADER,
    DecodeError,
    decode,
    encode,
    headers_for,
)

TX = Transaction(transaction_id="9", event_time=datetime(2018, 4, 1, tzinfo=UTC),
                 customer_id="c", terminal_id="t", amount=12.5)


def test_round_trip_is_lossless() -> None:
    assert decode(encode(TX), Transaction, headers_for(Transaction)) == TX


def test_encoded_datetimes_are_rfc3339_utc() -> None:
    assert orjson.loads(encode(TX))["event_time"] == "2018-04-01T00:00:00+00:00"


def test_headers_name_type_and_version() -> None:
    headers = dict(headers_for(Label))
    assert headers[EVENT_TYPE_HEADER] == b"Label"
    assert headers[SCHEMA_VERSION_HEADER] == Label.schema_version.encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "Invalid JSON"),
        (b'{"transaction_id": "1"}', "event_time: Field required"),
        (b'{"transaction_id":"1","event_time":"2018-04-01T00:00:00Z","customer_id":"c",'
         b'"amount":"lots"}', "amount: Input should be a valid number"),
        (None, "tombstone"),
    ],
)
def test_decode_errors_name_the_problem(raw: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(raw, Transaction)


def test_incompatible_major_version_is_refused() -> None:
    with pytest.raises(DecodeError, match=r"schema version 2\.0"):
        decode(encode(TX), Transaction, [(SCHEMA_VERSION_HEADER, b"2.0")])


def test_compatible_minor_version_and_missing_header_are_accepted() -> None:
    assert decode(encode(TX), Transaction, [(SCHEMA_VERSION_HEADER, b"1.7")]) == TX
    assert decode(encode(TX), Transaction, []) == TX
