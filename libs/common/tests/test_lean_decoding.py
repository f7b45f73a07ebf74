"""The lean ``transactions`` / ``labels`` decoders, against pydantic itself.

They must accept exactly what ``Transaction`` / ``Label`` accept, build events
indistinguishable from pydantic's (``==``, field order and types, set fields,
``encode`` bytes), and refuse everything else with pydantic's reason. Valid
variants are also checked to stay on the fast path (a decoder that always fell
back would pass every parity test while saving nothing).
"""

from __future__ import annotations

import doctest
import json
import math
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from rtml_common import lean_decoding
from rtml_common.events import MAX_AMOUNT, Event, Label, Transaction
from rtml_common.lean_decoding import (
    RFC3339,
    _require_plain,
    _WireLabel,
    decode_label,
    decode_transaction,
    parse_utc,
)
from rtml_common.serde import SCHEMA_VERSION_HEADER, DecodeError, decode, encode, headers_for

T0 = datetime(2018, 4, 1, 12, 30, 0, 123456, tzinfo=UTC)
TX = {"transaction_id": "tx-1", "event_time": "2018-04-01T12:30:00.123456Z",
      "customer_id": "c1", "terminal_id": "t1", "amount": 57.16, "currency": "EUR"}
LABEL = {"transaction_id": "tx-1", "customer_id": "c1", "terminal_id": "t1",
         "transaction_time": "2018-04-01T12:30:00.123456Z",
         "labeled_at": "2018-04-20T01:00:00+02:00", "is_fraud": True, "fraud_scenario": 2}
DROP = object()
KINDS = {Transaction: (TX, decode_transaction), Label: (LABEL, decode_label)}
TIME_FIELDS = [(Transaction, "event_time"), (Label, "transaction_time"), (Label, "labeled_at")]


def raw(event_type: type[Event], **changes: object) -> bytes:
    fields = {**KINDS[event_type][0], **changes}
    kept = {k: v for k, v in fields.items() if v is not DROP}
    return json.dumps(kept, separators=(",", ":"), ensure_ascii=False).encode()  # big ints too


def lean(event_type: type[Event], value: bytes | None, headers: Any = None) -> Any:
    return KINDS[event_type][1](value, headers_for(event_type) if headers is None else headers)


@pytest.fixture
def fallbacks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes | None]]:
    """The values the lean decoders handed to pydantic."""
    handed: list[bytes | None] = []

    def counting_decode(value: bytes | None, event_type: type[Event], *args: Any) -> Event:
        handed.append(value)
        return decode(value, event_type, *args)

    monkeypatch.setattr(lean_decoding, "decode", counting_decode)
    yield handed


def same_as_pydantic(event_type: type[Event], value: bytes) -> Any:
    """The lean event, checked indistinguishable from ``model_validate_json``'s."""
    fast = lean(event_type, value)
    full = decode(value, event_type, headers_for(event_type))
    assert type(fast) is event_type
    assert fast == full
    assert list(fast.__dict__) == list(full.__dict__)  # field order
    assert [type(v) for v in fast.__dict__.values()] == [type(v) for v in full.__dict__.values()]
    assert fast.model_fields_set == full.model_fields_set
    assert type(fast.model_fields_set) is set
    assert (fast.__pydantic_extra__, fast.__pydantic_private__) == (None, None)
    assert (full.__pydantic_extra__, full.__pydantic_private__) == (None, None)
    for name, moment in fast.__dict__.items():
        if isinstance(moment, datetime):
            assert moment.tzinfo is UTC and full.__dict__[name].tzinfo is UTC
    assert encode(fast) == encode(full)
    assert fast.model_dump(exclude_unset=True) == full.model_dump(exclude_unset=True)
    assert fast.model_dump_json(exclude_unset=True) == full.model_dump_json(exclude_unset=True)
    assert repr(fast) == repr(full)
    assert hash(fast) == hash(full)
    return fast


def test_realistic_events_round_trip_on_the_fast_path(fallbacks: list[bytes | None]) -> None:
    tx = Transaction(transaction_id="1754", event_time=datetime(2018, 4, 1, 0, 7, 56, tzinfo=UTC),
                     customer_id="2690", terminal_id="9103", amount=55.45)
    label = Label(transaction_id="1754", customer_id="2690", terminal_id="9103",
                  transaction_time=tx.event_time, labeled_at=T0, is_fraud=False,
                  fraud_scenario=0)
    assert same_as_pydantic(Transaction, encode(tx)) == tx
    assert same_as_pydantic(Label, encode(label)) == label
    assert same_as_pydantic(Transaction, raw(Transaction)).event_time == T0
    assert fallbacks == []


@pytest.mark.parametrize(("event_type", "changes"), [
    (Transaction, {"terminal_id": DROP}),  # optional fields absent: defaults, not in fields set
    (Transaction, {"currency": DROP}),
    (Transaction, {"terminal_id": DROP, "currency": DROP}),
    (Transaction, {"terminal_id": None, "currency": "USD"}),
    (Transaction, {"event_time": "2018-04-01T14:30:00.5+02:00"}),  # normalised to UTC
    (Transaction, {"event_time": "2018-04-01T12:30:00-00:00"}),
    (Transaction, {"amount": 0}),  # an int for a float: a float
    (Transaction, {"amount": -0.0}),
    (Transaction, {"amount": 2**29}),  # an int: a float
    (Transaction, {"amount": MAX_AMOUNT}),  # the maximum itself
    (Transaction, {"amount": int(MAX_AMOUNT)}),
    (Transaction, {"amount": 1e-320}),
    (Transaction, {"transaction_id": "x" * 128, "customer_id": "\U0001f600" * 128}),
    (Transaction, {"customer_id": 'c"\\\u00e9/\u2028'}),  # escapes
    (Label, {"terminal_id": DROP}),
    (Label, {"fraud_scenario": DROP}),
    (Label, {"terminal_id": DROP, "fraud_scenario": DROP}),
    (Label, {"terminal_id": None, "fraud_scenario": None}),
    (Label, {"is_fraud": False, "fraud_scenario": 0}),
    (Label, {"fraud_scenario": 2**63}),
    (Label, {"transaction_time": "2018-04-01T12:30:00+05:30",
             "labeled_at": "2018-04-01T12:30:00.000001-23:59"}),
])
def test_valid_variants_on_the_fast_path(event_type: type[Event], changes: dict[str, object],
                                         fallbacks: list[bytes | None]) -> None:
    same_as_pydantic(event_type, raw(event_type, **changes))
    assert fallbacks == []


def test_duplicate_keys_count_the_last_like_pydantic(fallbacks: list[bytes | None]) -> None:
    value = raw(Transaction).replace(b'"amount":57.16', b'"amount":1,"amount":57.16')
    assert same_as_pydantic(Transaction, value).amount == 57.16
    assert fallbacks == []


@pytest.mark.parametrize(("event_type", "changes"), [
    (Transaction, {"event_time": "2018-04-01T12:30:00.1234567Z"}),  # more than microseconds
    (Transaction, {"event_time": "2018-04-01t12:30:00z"}),  # RFC 3339 allows lower case
    (Label, {"labeled_at": "2018-04-01t12:30:00.9999999z"}),
])
def test_valid_variants_off_the_fast_path_are_decided_by_pydantic(
    event_type: type[Event], changes: dict[str, object], fallbacks: list[bytes | None],
) -> None:
    value = raw(event_type, **changes)
    same_as_pydantic(event_type, value)
    assert fallbacks == [value]


@pytest.mark.parametrize("scenario", [2**64, 10**4299])
def test_integers_beyond_64_bits_are_read_like_pydantic(scenario: int) -> None:
    value = raw(Label, fraud_scenario=scenario)  # (which encode() cannot write back: orjson)
    assert lean(Label, value) == decode(value, Label)
    assert lean(Label, value).fraud_scenario == scenario


def test_a_valid_first_duplicate_does_not_hide_an_invalid_one() -> None:
    value = raw(Transaction).replace(b'"transaction_id":"tx-1"',
                                     b'"transaction_id":"","transaction_id":"tx-1"')
    assert same_as_pydantic(Transaction, value).transaction_id == "tx-1"  # pydantic: last wins


@pytest.mark.parametrize(("event_type", "value", "reason"), [
    (Transaction, b"{not json", "Invalid JSON"),
    (Label, b"[1, 2]", "value: Input should be an object"),
    (Transaction, raw(Transaction).replace(b"tx-1", b"\xff\xfe"), "invalid unicode code point"),
    (Label, raw(Label).replace(b"tx-1", b"\\ud800"), "Invalid JSON"),  # lone surrogate
    (Transaction, raw(Transaction, amount=-1.0), "amount: Input should be greater than or equal"),
    # Strict types (issue #17): what pydantic's lax mode used to convert is refused.
    (Transaction, raw(Transaction, amount="12.5"), "amount: Input should be a valid number"),
    (Transaction, raw(Transaction, amount=True), "amount: Input should be a valid number"),
    (Transaction, raw(Transaction, amount=None), "amount: Input should be a valid number"),
    (Transaction, raw(Transaction, event_time=1522585800), "event_time: Input should be an "
                                                           "RFC 3339 date-time string"),
    (Transaction, raw(Transaction, event_time=1522585800.5), "event_time: Input should be an "
                                                             "RFC 3339"),
    (Transaction, raw(Transaction, event_time="1522585800"), "event_time: Input should be an "
                                                             "RFC 3339"),
    (Transaction, raw(Transaction, event_time="2018-04-01 12:30:00Z"), "event_time: Input "
                                                                       "should be an RFC 3339"),
    (Label, raw(Label, labeled_at=1524182400), "labeled_at: Input should be an RFC 3339"),
    (Label, raw(Label, transaction_time=True), "transaction_time: Input should be an RFC 3339"),
    (Label, raw(Label, is_fraud=1), "is_fraud: Input should be a valid boolean"),
    (Label, raw(Label, is_fraud="yes"), "is_fraud: Input should be a valid boolean"),
    (Label, raw(Label, fraud_scenario=2.0), "fraud_scenario: Input should be a valid integer"),
    (Label, raw(Label, fraud_scenario="3"), "fraud_scenario: Input should be a valid integer"),
    # Bounded amounts (issue #17): valid JSON numbers above the contract's maximum.
    (Transaction, raw(Transaction, amount=1e308), "amount: Input should be less than or equal "
                                                  f"to {MAX_AMOUNT:.0f}"),
    (Transaction, raw(Transaction, amount=math.nextafter(MAX_AMOUNT, math.inf)),
     "amount: Input should be less than or equal"),
    (Transaction, raw(Transaction, amount=int(MAX_AMOUNT) + 1), "amount: Input should be less "
                                                                "than or equal"),
    (Transaction, raw(Transaction, amount=2**70), "amount: Input should be less than or equal"),
    (Transaction, raw(Transaction).replace(b"57.16", b"1e309"), "amount: Input should be a "
                                                                "finite number"),
    (Transaction, raw(Transaction).replace(b"57.16", b"-1e309"), "amount: Input should be a "
                                                                 "finite number"),
    (Transaction, raw(Transaction).replace(b"57.16", b"Infinity"), "amount: Input should be a "
                                                                   "finite number"),
    (Transaction, raw(Transaction).replace(b"57.16", b"1e999"), "amount: Input should be a "
                                                                "finite number"),
    (Transaction, raw(Transaction).replace(b"57.16", b"NaN"), "amount: Input should be a finite"),
    (Transaction, raw(Transaction, transaction_id=""), "transaction_id: String should have at "
                                                       "least 1 character"),
    (Label, raw(Label, customer_id=7), "customer_id: Input should be a valid string"),
    (Label, raw(Label, terminal_id="t" * 129), "terminal_id: String should have at most 128"),
    (Transaction, raw(Transaction, currency="EU"), "currency: String should have at least 3"),
    (Transaction, raw(Transaction, currency="EURO"), "currency: String should have at most 3"),
    (Transaction, raw(Transaction, currency=None), "currency: Input should be a valid string"),
    (Transaction, raw(Transaction, event_time="2018-04-01T12:30:00"),
     "event_time: Value error, datetime must be timezone-aware"),
    (Label, raw(Label, transaction_time="2018-02-30T12:30:00Z"),
     "transaction_time: Input should be a valid datetime"),
    (Label, raw(Label, labeled_at="2018-04-01T12:30:00+00:60"), "labeled_at: Input should be a "
                                                                "valid datetime"),
    (Label, raw(Label, is_fraud=None), "is_fraud: Input should be a valid boolean"),
    (Label, raw(Label, is_fraud="maybe"), "is_fraud: Input should be a valid boolean"),
    (Label, raw(Label, fraud_scenario=-1), "fraud_scenario: Input should be greater than or "
                                           "equal to 0"),
    (Label, raw(Label, fraud_scenario=1.5), "fraud_scenario: Input should be a valid integer"),
    (Label, raw(Label).replace(b":2}", b":1" + b"0" * 4300 + b"}"), "number out of range"),
    (Transaction, raw(Transaction, amount=DROP), "amount: Field required"),
    (Label, raw(Label, is_fraud=DROP, labeled_at=DROP), "labeled_at: Field required; is_fraud"),
    (Transaction, raw(Transaction, extra=1), "extra: Extra inputs are not permitted"),
    (Label, raw(Label, schema_version="1.0"), "schema_version: Extra inputs are not permitted"),
    (Transaction, None, "tombstone"),
    (Label, None, "tombstone"),
])
def test_malformed_records_are_refused_with_the_schema_reason(
    event_type: type[Event], value: bytes | None, reason: str,
) -> None:
    with pytest.raises(DecodeError, match=reason) as refused:
        lean(event_type, value)
    with pytest.raises(DecodeError) as full:
        decode(value, event_type, headers_for(event_type))
    assert str(refused.value) == str(full.value)


STAMPS = [
    "2018-04-01T12:30:00Z", "2018-04-01t12:30:00z", "2018-04-01 12:30:00Z",
    "2018-04-01_12:30:00Z", "2018-04-01T12:30:00+0200", "2018-04-01T12:30:00.1234567891Z",
    "2018-04-01T12:30:00.9999999Z", "2018-04-01T12:30:00.000000Z", "2018-04-01T23:59:60Z",
    "2018-04-01T24:00:00Z", "20180401T123000Z", "2018-04-01T12:30Z", "2018-04-01T12:30:00.Z",
    "2018-04-01T12:30:00,5Z", "2018-04-01T12:30:00-00:00", "2018-04-01T12:30:00+24:00",
    "2018-04-01T12:30:00+23:59", "2018-04-01T12:30:00-23:59", "2018-04-01T12:30:00+00:60",
    "2018-04-01T12:30:00+05:30:15", "2018-04-01T12:30:00+02", "0000-04-01T12:30:00Z",
    "2018-02-29T12:30:00Z", "2016-02-29T12:30:00Z", "2018-04-01", "1522585800",
    "2018-04-01T12:30:00Z ", "\uff12018-04-01T12:30:00Z", "2018-W13-7T12:30:00Z",
    "2018-091T12:30:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
]


def outcome(decoder: Callable[[], Event], field: str) -> tuple[str, object]:
    """What decoding did: the field's value, or the exception's type and message."""
    try:
        return "accepted", getattr(decoder(), field)
    except (DecodeError, OverflowError) as exc:  # OverflowError: pydantic's own (see report)
        return type(exc).__name__, str(exc)


def same_outcome(event_type: type[Event], field: str, stamp: str) -> tuple[str, object]:
    value = raw(event_type, **{field: stamp})
    full = outcome(lambda: decode(value, event_type, headers_for(event_type)), field)
    assert outcome(lambda: lean(event_type, value), field) == full
    if full[0] == "accepted":
        same_as_pydantic(event_type, value)
    return full


@pytest.mark.parametrize("stamp", STAMPS)
@pytest.mark.parametrize(("event_type", "field"), TIME_FIELDS)
def test_timestamp_spellings_are_accepted_exactly_when_pydantic_accepts_them(
    event_type: type[Event], field: str, stamp: str,
) -> None:
    same_outcome(event_type, field, stamp)


@pytest.mark.parametrize(("event_type", "field"), TIME_FIELDS)
def test_mutated_timestamps_are_read_like_pydantic(event_type: type[Event], field: str) -> None:
    """Random edits of valid stamps, so a spelling nobody listed cannot slip through."""
    rng = random.Random(f"{event_type.__name__}.{field}")
    alphabet = "0123456789-:+.,TtZz _W"
    accepted = 0
    for _ in range(1500):
        chars = list(rng.choice(["2018-04-01T12:30:00.123456Z", "2018-12-31T23:59:59+23:59",
                                 "2020-02-29T00:00:00-05:30"]))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(chars) + 1)
            edit = rng.randrange(3)
            if edit == 0 and at < len(chars):
                chars[at] = rng.choice(alphabet)
            elif edit == 1:
                chars.insert(at, rng.choice(alphabet))
            elif at < len(chars):
                del chars[at]
        accepted += same_outcome(event_type, field, "".join(chars))[0] == "accepted"
    assert 50 < accepted < 1450  # both outcomes exercised


def test_random_amounts_parse_to_the_same_float() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25)))
        point = rng.randint(0, len(digits))
        text = f"{digits[:point] or '0'}.{digits[point:] or '0'}e{rng.randint(-330, 310)}"
        value = raw(Transaction).replace(b"57.16", text.encode())
        try:
            full = decode(value, Transaction)
        except DecodeError as refused:  # out of range
            with pytest.raises(DecodeError) as lean_refused:
                lean(Transaction, value)
            assert str(lean_refused.value) == str(refused)
        else:
            assert lean(Transaction, value).amount.hex() == full.amount.hex()


def test_parse_utc_reads_only_the_spellings_fromisoformat_and_pydantic_share() -> None:
    assert parse_utc("2018-04-01T14:30:00.123456+02:00") == T0.replace(hour=12)
    assert parse_utc("2018-04-01T12:30:00Z") is not None
    for other in ("2018-04-01T12:30:00+00:60", "2018-04-01 12:30:00Z", "2018-04-01T12:30:00",
                  "2018-04-01T12:30:00.1234567Z", "2018-02-30T12:30:00Z",
                  "0001-01-01T00:00:00+01:00"):
        assert parse_utc(other) is None, other


@pytest.mark.parametrize(("base", "editable"), [("2018-04-01T12:30:59+00:00", 19),
                                                ("2018-04-01T12:30:59.123456+00:00", 26)])
def test_parse_utc_fast_path_agrees_with_the_regex_path(base: str, editable: int) -> None:
    """Strings shaped like ``YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`` skip the regex: same
    verdicts."""
    rnd = random.Random(11)
    alphabet = "0123456789-:T+ .,Zx\u0661"  # \u0661: a non-ASCII digit
    tried = 0
    for _ in range(20_000):
        chars = list(base)
        for _ in range(rnd.randint(1, 3)):
            chars[rnd.randrange(editable)] = rnd.choice(alphabet)  # never the +00:00 suffix
        text = "".join(chars)
        if len(text) != len(base) or text[4:17:3] != "--T::" or (
                len(text) == 32 and text[19] != "."):
            continue
        tried += 1
        expected = None
        if RFC3339.fullmatch(text):
            try:
                expected = datetime.fromisoformat(text)
            except ValueError:
                expected = None
        assert parse_utc(text) == expected, text
    assert tried > 5_000


@pytest.mark.parametrize("event_type", [Transaction, Label])
def test_schema_version_is_checked_the_last_header_counting(event_type: type[Event]) -> None:
    value = raw(event_type)
    with pytest.raises(DecodeError, match=rf"{event_type.__name__}: schema version 2\.0"):
        lean(event_type, value, [(SCHEMA_VERSION_HEADER, b"2.0")])
    assert lean(event_type, value, [(SCHEMA_VERSION_HEADER, b"1.7")]).transaction_id == "tx-1"
    with pytest.raises(DecodeError, match=r"schema version 2\.1"):  # a remembered 1.7 first
        lean(event_type, value, [(SCHEMA_VERSION_HEADER, b"1.7"), (SCHEMA_VERSION_HEADER, b"2.1")])
    assert lean(event_type, value, [(SCHEMA_VERSION_HEADER, b"2.0"),
                                    (SCHEMA_VERSION_HEADER, b"1.3")]).transaction_id == "tx-1"
    assert lean(event_type, value, []).transaction_id == "tx-1"
    with pytest.raises(DecodeError, match="tombstone"):  # checked first, like decode()
        lean(event_type, None, [(SCHEMA_VERSION_HEADER, b"2.0")])


def test_models_the_shortcut_would_build_wrongly_are_refused() -> None:
    class Hooked(Event):
        transaction_id: str

        def model_post_init(self, context: Any, /) -> None:
            pass

    with pytest.raises(TypeError, match="post-init"):
        _require_plain(Hooked, _WireLabel)
    with pytest.raises(TypeError, match="exactly Transaction's fields"):
        _require_plain(Transaction, _WireLabel)
    _require_plain(Label, _WireLabel)


def test_docstring_examples() -> None:
    result = doctest.testmod(lean_decoding, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
