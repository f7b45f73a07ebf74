"""Events, lean decoders and JSON Schemas generated from an EventSchema.

``events.Transaction`` and ``events.Label`` are generated from the handbook's
schemas; the hand-written classes they replaced stay in ``events.py`` as what
type checkers read (its ``if TYPE_CHECKING:`` block), and this module builds
them from that source, so they remain the reference: the generated events must
accept the same records (with equal field values, types and set fields) and
refuse them (with the same messages), in JSON and Python modes, have the same
fields and the same JSON Schema. Likewise lean_decoding's typed wire structs
and the generated ones. The corpus is the one the events are held to
(``test_lean_decoding.py``, ``test_events.py``), read from those modules so a
case added there is checked here too. A non-handbook schema (the payments
example: categories, an optional IP address) is decoded end to end.
"""

from __future__ import annotations

import ast
import doctest
import importlib.util
import json
import math
import random
import subprocess
import sys
import types
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import BaseModel, ValidationError

from rtml_common import events, lean_decoding, schema_lean, schema_models
from rtml_common.handbook import LABEL_SCHEMA, TRANSACTION_SCHEMA
from rtml_common.schema import EventSchema, Field, FieldType
from rtml_common.schema_models import event_model, json_schema, lean_decoder
from rtml_common.serde import DecodeError, decode, encode, headers_for

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parents[2]


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


#: The hand-written events' own test modules: their corpus of records.
LEAN = _load("rtml_common_tests_lean_corpus", TESTS / "test_lean_decoding.py")
EVENTS = _load("rtml_common_tests_events_corpus", TESTS / "test_events.py")


def _payments_schema() -> EventSchema:
    path = ROOT / "examples" / "feature_repos" / "payments"
    if "repo_payments_schema_models" not in sys.modules:
        package = types.ModuleType("repo_payments_schema_models")
        package.__path__ = [str(path)]
        sys.modules["repo_payments_schema_models"] = package
    module = importlib.import_module("repo_payments_schema_models.schema")
    payment: EventSchema = module.PAYMENT
    return payment


PAYMENT = _payments_schema()


def cases(test: Callable[..., Any]) -> list[Any]:
    """The parameter values of one of the corpus modules' parametrized tests."""
    marks = [m for m in test.pytestmark if m.name == "parametrize"]  # type: ignore[attr-defined]
    assert marks, test
    return list(marks[0].args[1])


def type_checking_classes(module: types.ModuleType) -> dict[str, type]:
    """The classes ``module`` declares under ``if TYPE_CHECKING:``, built in its namespace."""
    tree = ast.parse(Path(module.__file__ or "").read_text())
    blocks = [node.body for node in tree.body
              if isinstance(node, ast.If) and isinstance(node.test, ast.Name)
              and node.test.id == "TYPE_CHECKING"]
    namespace = dict(vars(module))
    for body in blocks:
        exec(compile(ast.Module(body=body, type_ignores=[]), module.__file__ or "", "exec"),
             namespace)
    return {node.name: namespace[node.name] for body in blocks for node in body
            if isinstance(node, ast.ClassDef)}


_DECLARED = type_checking_classes(events)
#: The corpus's event type (the generated class) -> the hand-written class it replaced.
HAND: dict[type[events.Event], type[events.Event]] = {
    events.Transaction: _DECLARED["Transaction"], events.Label: _DECLARED["Label"]}
#: The corpus's event type -> the model generated from its schema.
TWINS: dict[type[events.Event], type[events.Event]] = {
    events.Transaction: event_model(TRANSACTION_SCHEMA),
    events.Label: event_model(LABEL_SCHEMA),
}
SCHEMAS = {events.Transaction: TRANSACTION_SCHEMA, events.Label: LABEL_SCHEMA}


def outcome(run: Callable[[], BaseModel]) -> tuple[str, Any]:
    """What decoding did: the values (and their types, the set fields), or the refusal."""
    try:
        event = run()
    except (DecodeError, OverflowError) as refused:  # OverflowError: pydantic's own
        return type(refused).__name__, str(refused)
    except ValidationError as refused:
        return "ValidationError", [(e["loc"], e["type"], e["msg"])
                                   for e in refused.errors(include_url=False)]
    values = event.__dict__
    return "accepted", (list(values.items()), [type(v) for v in values.values()],
                        sorted(event.model_fields_set))


def hand_vs_generated(event_type: type[events.Event], value: bytes | None) -> tuple[str, Any]:
    """The hand-written event's outcome, checked equal to the generated model's and to the
    generated lean decoder's (which must build what the generated model builds)."""
    twin = TWINS[event_type]
    headers = headers_for(event_type)
    hand = outcome(lambda: decode(value, HAND[event_type], headers))
    assert outcome(lambda: decode(value, twin, headers)) == hand, value
    assert outcome(lambda: lean_decoder(SCHEMAS[event_type])(value, headers)) == hand, value
    if hand[0] == "accepted":
        assert value is not None
        indistinguishable(lean_decoder(SCHEMAS[event_type]), value)
    return hand


def indistinguishable(decoder: schema_lean.LeanDecoder[Any], value: bytes) -> Any:
    """The lean decoder's event, checked equal in every respect to the model's own parse."""
    model = decoder.model
    fast = decoder(value, headers_for(model))
    full = model.model_validate_json(value)
    assert type(fast) is model
    assert fast == full
    assert list(fast.__dict__) == list(full.__dict__)
    assert [type(v) for v in fast.__dict__.values()] == [type(v) for v in full.__dict__.values()]
    assert fast.model_fields_set == full.model_fields_set
    assert type(fast.model_fields_set) is set
    assert (fast.__pydantic_extra__, fast.__pydantic_private__) == (None, None)
    for moment in fast.__dict__.values():
        if isinstance(moment, datetime):
            assert moment.tzinfo is UTC
    try:
        encoded = encode(full)
    except TypeError:  # orjson writes no integer beyond 64 bits
        with pytest.raises(TypeError):
            encode(fast)
    else:
        assert encode(fast) == encoded
    assert fast.model_dump_json() == full.model_dump_json()
    assert fast.model_dump_json(exclude_unset=True) == full.model_dump_json(exclude_unset=True)
    assert repr(fast) == repr(full)
    assert hash(fast) == hash(full)
    return fast


class Counting:
    """A fallback recording what the lean decoder left to pydantic."""

    def __init__(self) -> None:
        self.handed: list[bytes | None] = []

    def __call__(self, value: bytes | None, event_type: type[Any]) -> Any:
        self.handed.append(value)
        return decode(value, event_type)


# -- the generated handbook events are the hand-written ones -----------------------------


def test_the_events_are_the_generated_classes() -> None:
    assert events.Transaction is event_model(TRANSACTION_SCHEMA)  # one class per schema
    assert events.Label is event_model(LABEL_SCHEMA)
    assert lean_decoding.decode_transaction is lean_decoder(
        TRANSACTION_SCHEMA, events.Transaction, lean_decoding._pydantic).decode
    assert (events.Transaction.__module__, events.Transaction.__qualname__) == (
        "rtml_common.events", "Transaction")


def test_generated_classes_are_named_versioned_and_strict_like_the_handbook() -> None:
    transaction, label = TWINS[events.Transaction], TWINS[events.Label]
    assert (transaction.__name__, label.__name__) == ("Transaction", "Label")
    assert issubclass(transaction, events.Event) and issubclass(label, events.Event)
    assert transaction.schema_version == HAND[events.Transaction].schema_version == "1.0"
    assert transaction.model_config == HAND[events.Transaction].model_config


@pytest.mark.parametrize("event_type", [events.Transaction, events.Label])
def test_the_typed_declarations_state_the_generated_fields(
        event_type: type[events.Event]) -> None:
    """events.py's typed classes (what mypy reads) hold the generated models' fields, one by one:
    the same names in the same order, types, constraints, defaults and descriptions."""
    hand, twin = HAND[event_type], TWINS[event_type]
    assert list(twin.model_fields) == list(hand.model_fields)
    for name, field in hand.model_fields.items():
        generated = twin.model_fields[name]
        assert repr(generated.annotation) == repr(field.annotation), name  # FieldInfo: no ==
        assert [repr(m) for m in generated.metadata] == [repr(m) for m in field.metadata], name
        assert generated.is_required() == field.is_required(), name
        assert generated.get_default() == field.get_default(), name
        assert generated.description == field.description, name


@pytest.mark.parametrize("name", ["_WireTransaction", "_WireLabel"])
def test_the_typed_wire_structs_are_the_generated_ones(name: str) -> None:
    declared = type_checking_classes(lean_decoding)[name]
    generated = getattr(lean_decoding, name)
    assert generated is lean_decoder(SCHEMAS[getattr(events, name[5:])]).wire
    described = [msgspec.inspect.type_info(struct) for struct in (declared, generated)]
    assert [(f.name, f.type, f.required, f.default) for f in described[0].fields] == [
        (f.name, f.type, f.required, f.default) for f in described[1].fields]
    assert (described[0].forbid_unknown_fields, described[0].array_like) == (
        described[1].forbid_unknown_fields, described[1].array_like)


def test_json_schemas_equal_the_hand_written_ones() -> None:
    assert json_schema(TRANSACTION_SCHEMA) == HAND[events.Transaction].model_json_schema()
    assert json_schema(LABEL_SCHEMA) == HAND[events.Label].model_json_schema()


@pytest.mark.parametrize("code", [
    "from rtml_common.schema_models import event_model\n"
    "from rtml_common.handbook import LABEL_SCHEMA\n"
    "model = event_model(LABEL_SCHEMA)\n"
    "from rtml_common.events import Label\n"
    "assert model is Label, model",
    "from rtml_common.schema_lean import lean_decoder\n"
    "from rtml_common.handbook import TRANSACTION_SCHEMA\n"
    "decoder = lean_decoder(TRANSACTION_SCHEMA)\n"
    "from rtml_common.lean_decoding import Transaction\n"
    "assert decoder.model is Transaction",
    "import rtml_common.lean_decoding",
])
def test_any_import_order_gives_one_class_per_schema(code: str) -> None:
    """events and lean_decoding build the handbook's classes with the generators when imported:
    asking the generators first must neither deadlock nor build a second class."""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_realistic_events_round_trip() -> None:
    tx = HAND[events.Transaction](
        transaction_id="1754", event_time=datetime(2018, 4, 1, tzinfo=UTC), customer_id="2690",
        terminal_id="9103", amount=55.45)
    label = HAND[events.Label](
        transaction_id="1754", customer_id="2690", transaction_time=LEAN.T0,
        labeled_at=LEAN.T0, is_fraud=False, fraud_scenario=0)
    for kind, event in ((events.Transaction, tx), (events.Label, label)):
        assert hand_vs_generated(kind, encode(event))[0] == "accepted"
        twin = TWINS[kind](**event.model_dump())
        assert twin.model_dump() == event.model_dump() and encode(twin) == encode(event)


@pytest.mark.parametrize(
    ("event_type", "changes"),
    cases(LEAN.test_valid_variants_on_the_fast_path)
    + cases(LEAN.test_valid_variants_off_the_fast_path_are_decided_by_pydantic))
def test_valid_variants_are_read_alike(event_type: type[events.Event],
                                       changes: dict[str, object]) -> None:
    assert hand_vs_generated(event_type, LEAN.raw(event_type, **changes))[0] == "accepted"


@pytest.mark.parametrize(("event_type", "changes"),
                         cases(LEAN.test_valid_variants_on_the_fast_path))
def test_valid_variants_stay_on_the_fast_path(event_type: type[events.Event],
                                              changes: dict[str, object]) -> None:
    counting = Counting()
    decoder = lean_decoder(SCHEMAS[event_type], fallback=counting)
    decoder(LEAN.raw(event_type, **changes), [])
    assert counting.handed == []


@pytest.mark.parametrize(("event_type", "value", "reason"),
                         cases(LEAN.test_malformed_records_are_refused_with_the_schema_reason))
def test_malformed_records_are_refused_alike(event_type: type[events.Event],
                                             value: bytes | None, reason: str) -> None:
    refused = hand_vs_generated(event_type, value)
    assert refused[0] == "DecodeError"
    assert refused[1].startswith(f"{event_type.__name__}: ")


@pytest.mark.parametrize("stamp", LEAN.STAMPS)
@pytest.mark.parametrize(("event_type", "field"), LEAN.TIME_FIELDS)
def test_timestamp_spellings_are_read_alike(event_type: type[events.Event], field: str,
                                            stamp: str) -> None:
    hand_vs_generated(event_type, LEAN.raw(event_type, **{field: stamp}))


def test_mutated_records_are_read_alike() -> None:
    """Random edits of valid records' bytes: each outcome the same for all three decoders."""
    rng = random.Random(20)
    accepted = 0
    for event_type in TWINS:
        base = LEAN.raw(event_type)
        for _ in range(400):
            chars = bytearray(base)
            for _ in range(rng.randint(1, 2)):
                at = rng.randrange(len(chars))
                chars[at:at + 1] = rng.choice([b"", b"0", b"1", b"-", b":", b'"', b"e",
                                               b"T", b"Z", b" ", b"null", b"x"])
            accepted += hand_vs_generated(event_type, bytes(chars))[0] == "accepted"
    assert 20 < accepted < 760  # both outcomes exercised


def test_random_amounts_parse_alike() -> None:
    rng = random.Random(7)
    for _ in range(300):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25)))
        point = rng.randint(0, len(digits))
        text = f"{digits[:point] or '0'}.{digits[point:] or '0'}e{rng.randint(-330, 310)}"
        hand_vs_generated(events.Transaction,
                          LEAN.raw(events.Transaction).replace(b"57.16", text.encode()))


@pytest.mark.parametrize(("field", "value", "reason"), EVENTS.REFUSED)
def test_python_and_json_modes_refuse_alike(field: str, value: object, reason: str) -> None:
    fields = {**EVENTS.TX_JSON, field: value}
    twin = TWINS[events.Transaction]
    for hand, generated in (
            (lambda: HAND[events.Transaction].model_validate(fields),
             lambda: twin.model_validate(fields)),
            (lambda: HAND[events.Transaction].model_validate_json(json.dumps(fields)),
             lambda: twin.model_validate_json(json.dumps(fields)))):
        refused = outcome(hand)
        assert outcome(generated) == refused
        assert refused[0] == "ValidationError" and reason in refused[1][0][2]


@pytest.mark.parametrize(("event_type", "fields"), [
    (events.Transaction, {**EVENTS.TX_JSON, "amount": 10**400}),
    (events.Transaction, {**EVENTS.TX_JSON, "amount": math.inf}),
    (events.Transaction, {**EVENTS.TX_JSON, "event_time": LEAN.T0}),
    (events.Transaction, {**EVENTS.TX_JSON, "event_time": datetime(2018, 4, 1)}),
    (events.Transaction, {**EVENTS.TX_JSON, "customer_id": b"c1"}),  # lax str, as before
    (events.Transaction, {**EVENTS.TX_JSON, "terminal_id": None, "currency": "USD"}),
    (events.Transaction, {**EVENTS.TX_JSON, "amout": 3}),
    (events.Label, {**LEAN.LABEL, "is_fraud": 1}),
    (events.Label, {**LEAN.LABEL, "fraud_scenario": 1.0}),
    (events.Label, {**LEAN.LABEL, "fraud_scenario": True}),
    (events.Label, {**LEAN.LABEL, "fraud_scenario": -1}),
    (events.Label, {**LEAN.LABEL, "labeled_at": "2018-04-01T12:30:00"}),
    (events.Label, {**LEAN.LABEL, "terminal_id": ""}),
])
def test_python_values_are_validated_alike(event_type: type[events.Event],
                                           fields: dict[str, Any]) -> None:
    """FastAPI and Python producers validate dicts of Python values (``model_validate``)."""
    hand = outcome(lambda: HAND[event_type].model_validate(fields))
    assert outcome(lambda: TWINS[event_type].model_validate(fields)) == hand


def test_generated_events_are_immutable() -> None:
    tx = TWINS[events.Transaction].model_validate(EVENTS.TX_JSON)
    with pytest.raises(ValidationError, match="frozen"):
        tx.amount = 5.0


def test_schema_version_header_is_checked() -> None:
    decoder = lean_decoder(TRANSACTION_SCHEMA)
    with pytest.raises(DecodeError, match=r"Transaction: schema version 2\.0"):
        decoder(LEAN.raw(events.Transaction), [("rtml-schema-version", b"2.0")])
    assert decoder(LEAN.raw(events.Transaction), [("rtml-schema-version", b"1.4")]).amount == 57.16
    with pytest.raises(DecodeError, match="tombstone"):
        decoder(None, [("rtml-schema-version", b"2.0")])


def test_the_decoder_builds_a_given_model_of_the_same_fields_only() -> None:
    declared = HAND[events.Transaction]
    hand = lean_decoder(TRANSACTION_SCHEMA, declared)
    assert type(hand(LEAN.raw(events.Transaction), [])) is declared
    assert hand(LEAN.raw(events.Transaction), []) == decode(LEAN.raw(events.Transaction),
                                                            declared)
    with pytest.raises(TypeError, match="exactly Label's fields"):
        lean_decoder(TRANSACTION_SCHEMA, events.Label)


# -- a schema of one's own: the payments example ---------------------------------------

PAYMENT_RECORD = {"transaction_id": "p1", "event_time": "2018-04-01T12:30:00.25Z",
                  "customer_id": "c1", "terminal_id": "t9", "amount": 12.5,
                  "device_id": "d-77", "ip_address": "203.0.113.9",
                  "merchant_category": "gaming", "country": "FR", "channel": "web"}


def payment(**changes: object) -> bytes:
    kept = {k: v for k, v in {**PAYMENT_RECORD, **changes}.items() if v is not LEAN.DROP}
    return json.dumps(kept, separators=(",", ":"), ensure_ascii=False).encode()


def model_vs_lean(schema: EventSchema, value: bytes | None) -> tuple[str, Any]:
    model = event_model(schema)
    full = outcome(lambda: decode(value, model, headers_for(model)))
    assert outcome(lambda: lean_decoder(schema)(value, headers_for(model))) == full, value
    if full[0] == "accepted":
        assert value is not None
        indistinguishable(lean_decoder(schema), value)
    return full


@pytest.mark.parametrize("changes", [
    {}, {"ip_address": LEAN.DROP}, {"ip_address": None}, {"terminal_id": LEAN.DROP},
    {"currency": "USD"}, {"merchant_category": "grocery", "channel": "pos"},
    {"event_time": "2018-04-01T14:30:00+02:00"}, {"ip_address": "2001:db8::" + "f" * 35},
])
def test_payments_are_decoded_on_the_fast_path(changes: dict[str, object]) -> None:
    counting = Counting()
    decoder = lean_decoder(PAYMENT, fallback=counting)
    event = decoder(payment(**changes), [])
    assert counting.handed == []
    assert type(event).__name__ == "Payment" and event.event_time.tzinfo is UTC
    assert model_vs_lean(PAYMENT, payment(**changes))[0] == "accepted"
    assert event.ip_address == changes.get("ip_address", PAYMENT_RECORD["ip_address"]) or (
        changes["ip_address"] is LEAN.DROP and event.ip_address is None)


@pytest.mark.parametrize(("changes", "reason"), [
    ({"merchant_category": "casino"}, "merchant_category: Input should be 'grocery', 'fuel', "
                                      "'restaurants', 'fashion', 'electronics', 'travel', "
                                      "'online_services' or 'gaming'"),
    ({"channel": "WEB"}, "channel: Input should be 'pos', 'web' or 'app'"),
    ({"channel": None}, "channel: Input should be 'pos', 'web' or 'app'"),
    ({"channel": LEAN.DROP}, "channel: Field required"),
    ({"ip_address": "x" * 46}, "ip_address: String should have at most 45 characters"),
    ({"ip_address": ""}, "ip_address: String should have at least 1 character"),
    ({"ip_address": 3232235777}, "ip_address: Input should be a valid string"),
    ({"country": "FRA"}, "country: String should have at most 2 characters"),
    ({"device_id": LEAN.DROP}, "device_id: Field required"),
    ({"amount": "12.5"}, "amount: Input should be a valid number"),
    ({"amount": 1e10}, "amount: Input should be less than or equal to 1000000000"),
    ({"event_time": 1522585800}, f"event_time: {events.NOT_RFC3339}"),
    ({"browser": "x"}, "browser: Extra inputs are not permitted"),
])
def test_invalid_payments_are_refused_with_the_model_reason(changes: dict[str, object],
                                                            reason: str) -> None:
    refused = model_vs_lean(PAYMENT, payment(**changes))
    assert refused == ("DecodeError", f"Payment: {reason}")


def test_mutated_payments_are_read_like_the_model() -> None:
    rng = random.Random(21)
    base = payment()
    accepted = 0
    for _ in range(600):
        chars = bytearray(base)
        for _ in range(rng.randint(1, 2)):
            at = rng.randrange(len(chars))
            chars[at:at + 1] = rng.choice([b"", b"0", b"1", b"-", b":", b'"', b"a", b"e",
                                           b"null", b"T", b"Z", b"x"])
        accepted += model_vs_lean(PAYMENT, bytes(chars))[0] == "accepted"
    assert 30 < accepted < 570


def test_the_payment_json_schema_states_the_categories_and_the_optional_ip() -> None:
    schema = json_schema(PAYMENT)
    assert schema["title"] == "Payment" and schema["additionalProperties"] is False
    assert schema["properties"]["channel"] == {"enum": ["pos", "web", "app"], "title": "Channel",
                                               "type": "string"}
    assert schema["properties"]["ip_address"]["anyOf"] == [
        {"maxLength": 45, "minLength": 1, "type": "string"}, {"type": "null"}]
    assert schema["properties"]["ip_address"]["description"] == PAYMENT.field(
        "ip_address").description
    assert schema["required"] == [f.name for f in PAYMENT.fields if f.required]
    assert schema["properties"]["currency"]["default"] == "EUR"


# -- every field kind, bound and optionality ---------------------------------------------

ODD = EventSchema(
    name="odd_event", topic="odd", id_field="id", event_time="at", partition_key="key",
    schema_version="2.3", description="Every field kind, bound and optionality.",
    fields=[Field("id", FieldType.STRING, min_length=2, max_length=4),
            Field("at", FieldType.TIMESTAMP),
            Field("key", FieldType.STRING, categories=("a", "bb", "ccc"), max_length=2),
            Field("seen", FieldType.TIMESTAMP, required=False, description="Optional time."),
            Field("count", FieldType.INTEGER, minimum=-2.5, maximum=7.5),
            Field("big", FieldType.INTEGER, required=False, maximum=2.0**70),
            Field("ratio", FieldType.NUMBER, required=False, default=0.5),
            Field("free", FieldType.NUMBER, required=False),
            Field("flag", FieldType.BOOLEAN, required=False, default=True),
            Field("flag2", FieldType.BOOLEAN, required=False),
            Field("note", FieldType.STRING, required=False, min_length=0, max_length=3)],
)
ODD_RECORD = {"id": "ab", "at": "2018-04-01T12:00:00Z", "key": "bb",
              "seen": "2018-04-01T13:00:00.5-01:00", "count": 7, "big": 2**62, "ratio": 1,
              "free": -1e300, "flag": False, "flag2": None, "note": ""}


def odd(**changes: object) -> bytes:
    kept = {k: v for k, v in {**ODD_RECORD, **changes}.items() if v is not LEAN.DROP}
    return json.dumps(kept, separators=(",", ":")).encode()


def test_every_field_kind_is_generated() -> None:
    model = event_model(ODD)
    assert model.__name__ == "OddEvent" and model.schema_version == "2.3"
    event = indistinguishable(lean_decoder(ODD), odd())
    assert event.seen == datetime(2018, 4, 1, 14, 0, 0, 500000, tzinfo=UTC)
    assert (event.count, event.big, event.ratio, event.flag, event.flag2) == (7, 2**62, 1.0,
                                                                              False, None)
    bare = lean_decoder(ODD)(odd(**{k: LEAN.DROP for k in ("seen", "big", "ratio", "free", "flag",
                                                            "flag2", "note")}), [])
    assert (bare.seen, bare.ratio, bare.flag, bare.note) == (None, 0.5, True, None)
    assert bare.model_fields_set == {"id", "at", "key", "count"}
    schema = json_schema(ODD)
    assert schema["properties"]["key"]["enum"] == ["a", "bb"]  # "ccc" is longer than 2
    assert schema["properties"]["seen"]["description"] == "Optional time."
    assert (schema["properties"]["count"]["minimum"], schema["properties"]["count"]["maximum"]) == (
        -2, 7)  # the integers the bounds admit


@pytest.mark.parametrize("changes", [
    {"id": "a"}, {"id": "abcde"}, {"key": "ccc"}, {"key": "a"}, {"count": -3}, {"count": -2},
    {"count": 8}, {"count": 7.0}, {"count": True}, {"big": 2**64}, {"big": 2**70},
    {"big": 2**70 + 1},
    {"big": -(2**70)}, {"ratio": None}, {"ratio": "1"}, {"free": None}, {"free": 1e309},
    {"flag": None}, {"flag": 0}, {"flag2": "true"}, {"seen": None}, {"seen": "2018-04-01"},
    {"seen": "2018-04-01T12:00:00"}, {"seen": 5}, {"seen": "2018-04-01t12:00:00.1234567z"},
    {"note": "abcd"}, {"note": None}, {"at": None}, {"at": LEAN.DROP}, {"zzz": 1},
])
def test_every_field_kind_is_decoded_like_the_model(changes: dict[str, object]) -> None:
    model_vs_lean(ODD, odd(**changes))


def test_a_keyword_field_is_read_and_a_model_attribute_refused() -> None:
    def schema(name: str) -> EventSchema:
        return EventSchema(name=f"transfer_{name}", topic="transfers", id_field="id",
                           event_time="at", partition_key="id",
                           fields=[Field("id", FieldType.STRING), Field("at", FieldType.TIMESTAMP),
                                   Field(name, FieldType.STRING, required=False)])

    transfer = schema("from")
    event = model_vs_lean(transfer, b'{"id":"a","at":"2018-04-01T12:00:00Z","from":"acc-1"}')
    assert event[1][0][2] == ("from", "acc-1")
    for taken in ("schema_version", "json", "model_config"):
        with pytest.raises(ValueError, match=f"field '{taken}' is a name events already use"):
            event_model(schema(taken))


def test_wire_struct_states_the_schema() -> None:
    wire = schema_lean.wire_struct(PAYMENT)
    assert wire.__struct_fields__ == tuple(PAYMENT.names)
    with pytest.raises(msgspec.ValidationError, match="merchant_category"):
        msgspec.json.decode(payment(merchant_category="casino"), type=wire)
    assert "def decode(value, headers):" in lean_decoder(PAYMENT).source


@pytest.mark.parametrize("module", [schema_models, schema_lean])
def test_docstring_examples(module: types.ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
