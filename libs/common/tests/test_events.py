"""Event contracts: strictness that protects consumers from bad producers."""

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from rtml_common.config import ContractSettings
from rtml_common.events import (
    MAX_AMOUNT,
    Decision,
    FeatureVector,
    FiredRule,
    Label,
    Outcome,
    Prediction,
    Transaction,
)

T0 = datetime(2018, 4, 1, 12, tzinfo=UTC)


def make_tx(**overrides: object) -> Transaction:
    fields: dict[str, object] = {
        "transaction_id": "1", "event_time": T0, "customer_id": "c1",
        "terminal_id": "t1", "amount": 10.0,
    }
    fields.update(overrides)
    return Transaction.model_validate(fields)


def test_transaction_normalises_offsets_to_utc() -> None:
    cet = timezone(timedelta(hours=2))
    tx = make_tx(event_time=datetime(2018, 4, 1, 14, tzinfo=cet))
    assert tx.event_time == T0
    assert tx.event_time.utcoffset() == timedelta(0)


def test_naive_datetime_is_rejected_with_reason() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        make_tx(event_time=datetime(2018, 4, 1, 12))


@pytest.mark.parametrize(
    ("field", "value"),
    [("amount", -1.0), ("amount", float("nan")), ("amount", float("inf")),
     ("customer_id", ""), ("currency", "EURO")],
)
def test_transaction_rejects_invalid_values(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        make_tx(**{field: value})


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="amout"):
        make_tx(amout=3)


def test_events_are_immutable() -> None:
    tx = make_tx()
    with pytest.raises(ValidationError):
        tx.amount = 5.0  # type: ignore[misc]


def test_scores_must_be_probabilities() -> None:
    with pytest.raises(ValidationError, match="score"):
        Prediction(transaction_id="1", customer_id="c", event_time=T0, model_name="m",
                   model_version="1", score=1.5, latency_ms=0.1, scored_at=T0)


def test_label_and_decision_round_trip_through_json() -> None:
    label = Label(transaction_id="1", customer_id="c", terminal_id="t", transaction_time=T0,
                  labeled_at=T0 + timedelta(days=7), is_fraud=True, fraud_scenario=2)
    assert Label.model_validate_json(label.model_dump_json()) == label
    decision = Decision(
        transaction_id="1", customer_id="c", event_time=T0, outcome=Outcome.DECLINE,
        score=0.97, model_name="m", model_version="3", rule_set_version="r1",
        fired_rules=[FiredRule(rule="high_score", reason_code="HS01", outcome=Outcome.DECLINE)],
        latency_ms=2.5, decided_at=T0,
    )
    assert Decision.model_validate_json(decision.model_dump_json()) == decision


# -- strict types and bounded amounts (issue #17) -------------------------------

TX_JSON = {"transaction_id": "1", "event_time": "2018-04-01T12:00:00Z", "customer_id": "c1",
           "amount": 10.0}

REFUSED = [
    ("amount", True, "Input should be a valid number"),
    ("amount", "12.5", "Input should be a valid number"),
    ("amount", 1e308, f"less than or equal to {MAX_AMOUNT:.0f}"),
    ("amount", math.nextafter(MAX_AMOUNT, math.inf), "less than or equal"),
    ("amount", 2**70, "less than or equal"),
    ("event_time", 1522585800, "RFC 3339 date-time string"),
    ("event_time", 1522585800.5, "RFC 3339 date-time string"),
    ("event_time", "1522585800", "RFC 3339 date-time string"),
    ("event_time", "2018-04-01 12:00:00Z", "RFC 3339 date-time string"),
    ("event_time", "2018-04-01T12:00:00+0200", "RFC 3339 date-time string"),
    ("event_time", "2018-04-01", "RFC 3339 date-time string"),
    ("event_time", None, "RFC 3339 date-time string"),
    ("event_time", "2018-04-01T12:00:00", "timezone-aware"),
    ("event_time", "2018-02-30T12:00:00Z", "valid datetime"),
]


def _outcome(validate: Callable[[], Transaction]) -> object:
    try:
        return validate()
    except ValidationError as refused:
        return [(e["loc"], e["type"], e["msg"]) for e in refused.errors(include_url=False)]


@pytest.mark.parametrize(("field", "value", "reason"), REFUSED)
def test_json_and_python_validation_refuse_the_same_values_the_same_way(
        field: str, value: object, reason: str) -> None:
    """The consumers decode JSON bytes, FastAPI validates a parsed dict (Python mode):
    lax-mode conversions (a string or a bool for a number, a unix time) are refused by
    both, with the same error."""
    fields = {**TX_JSON, field: value}
    as_json = _outcome(lambda: Transaction.model_validate_json(json.dumps(fields)))
    as_python = _outcome(lambda: Transaction.model_validate(fields))
    assert as_json == as_python
    assert isinstance(as_json, list) and len(as_json) == 1, as_json
    assert as_json[0][0] == (field,) and reason in as_json[0][2]


def test_an_integer_beyond_any_float_is_refused_in_both_modes() -> None:
    """10**400: JSON reads it as inf (not finite), Python cannot make it a float."""
    fields = {**TX_JSON, "amount": 10**400}
    with pytest.raises(ValidationError, match="finite number"):
        Transaction.model_validate_json(json.dumps(fields))
    with pytest.raises(ValidationError, match="valid number"):
        Transaction.model_validate(fields)


@pytest.mark.parametrize("value", [0, 0.0, 57.16, 12, MAX_AMOUNT, int(MAX_AMOUNT)])
def test_amounts_up_to_the_maximum_are_accepted_as_numbers(value: float) -> None:
    fields = {**TX_JSON, "amount": value}
    assert Transaction.model_validate_json(json.dumps(fields)).amount == float(value)
    assert Transaction.model_validate(fields).amount == float(value)


def test_rfc3339_spellings_and_datetimes_are_accepted() -> None:
    for stamp in ("2018-04-01T14:00:00+02:00", "2018-04-01t12:00:00z",
                  "2018-04-01T12:00:00.000000Z", "2018-04-01T12:00:00-00:00"):
        fields = {**TX_JSON, "event_time": stamp}
        assert Transaction.model_validate_json(json.dumps(fields)).event_time == T0
        assert Transaction.model_validate(fields).event_time == T0
    assert make_tx(event_time=T0).event_time == T0  # Python producers pass datetimes


def test_label_flags_and_feature_values_are_strict() -> None:
    label = {"transaction_id": "1", "customer_id": "c1", "transaction_time": "2018-04-01T12:00:00Z",
             "labeled_at": "2018-04-08T12:00:00Z", "is_fraud": True, "fraud_scenario": 1}
    assert Label.model_validate_json(json.dumps(label)).is_fraud is True
    for field, value in (("is_fraud", 1), ("is_fraud", "true"), ("fraud_scenario", "1"),
                         ("fraud_scenario", 1.0)):
        with pytest.raises(ValidationError, match=field):
            Label.model_validate_json(json.dumps({**label, field: value}))
        with pytest.raises(ValidationError, match=field):
            Label.model_validate({**label, field: value})
    vector = {"transaction_id": "1", "customer_id": "c1", "event_time": "2018-04-01T12:00:00Z",
              "amount": 1.0, "feature_set": "baseline", "feature_set_version": "v1",
              "features": {"a": 1.5}, "computed_at": "2018-04-01T12:00:01Z"}
    assert FeatureVector.model_validate_json(json.dumps(vector)).features == {"a": 1.5}
    for bad in (b'"a":NaN', b'"a":Infinity', b'"a":-Infinity', b'"a":1e309', b'"a":"1.5"',
                b'"a":true'):
        raw = json.dumps(vector).encode().replace(b'"a": 1.5', bad)
        with pytest.raises(ValidationError, match=r"features\.a"):
            FeatureVector.model_validate_json(raw)
    with pytest.raises(ValidationError, match=r"features\.a"):
        FeatureVector.model_validate({**vector, "features": {"a": math.inf}})
    with pytest.raises(ValidationError, match="amount"):
        FeatureVector.model_validate({**vector, "amount": 1e308})


def test_the_maximum_amount_is_configured_by_environment_and_exported() -> None:
    """RTML_CONTRACT_MAX_AMOUNT, read once at import, is the models' and the schemas' bound."""
    code = ("import json; from rtml_common.events import Transaction, MAX_AMOUNT; "
            "print(json.dumps([MAX_AMOUNT, "
            "Transaction.model_json_schema()['properties']['amount']['maximum']]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "RTML_CONTRACT_MAX_AMOUNT": "5000"}, check=True)
    assert json.loads(run.stdout) == [5000.0, 5000.0]
    refused = subprocess.run([sys.executable, "-c", "import rtml_common.events"],
                             capture_output=True, text=True,
                             env={**os.environ, "RTML_CONTRACT_MAX_AMOUNT": "1e300"})
    assert refused.returncode != 0 and "max_amount" in refused.stderr
    assert ContractSettings().max_amount == MAX_AMOUNT == 1e9  # the documented default
