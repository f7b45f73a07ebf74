"""Event contracts: strictness that protects consumers from bad producers."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from rtml_common.events import Decision, FiredRule, Label, Outcome, Prediction, Transaction

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
