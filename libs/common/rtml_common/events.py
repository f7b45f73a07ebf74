"""Typed, versioned event contracts for every rtml topic.

Every event carries a ``schema_version`` class constant that producers write
into the ``rtml-schema-version`` Kafka header (see :mod:`rtml_common.serde`).
A consumer that sees a major version it does not know refuses the record to
the dead-letter topic instead of guessing at its meaning.

Events are immutable (``frozen``) and strict about unknown fields
(``extra="forbid"``): a typo in a non-Python producer's field name must be a
dead-lettered record with a precise reason, not a silently dropped value.

Times are timezone-aware UTC ``datetime``s on the wire as ISO-8601 strings;
naive datetimes are rejected because a fraud feature window computed in the
wrong timezone is silently wrong for hours.

>>> from datetime import datetime, timezone
>>> tx = Transaction(transaction_id="42", event_time=datetime(2018, 4, 1, 12, tzinfo=timezone.utc),
...                  customer_id="c1", terminal_id="t7", amount=57.16)
>>> tx.amount
57.16
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _require_utc(value: datetime) -> datetime:
    """Reject naive datetimes and normalise aware ones to UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware (e.g. 2018-04-01T12:00:00Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: a refusal, not a crash
        raise ValueError("datetime is out of range once converted to UTC") from None


UtcDatetime = Annotated[datetime, AfterValidator(_require_utc)]
EntityId = Annotated[str, Field(min_length=1, max_length=128)]


class Event(BaseModel):
    """Base of all events: immutable, strict, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    #: Semantic version of the event's schema: major bumps break consumers.
    schema_version: ClassVar[str] = "1.0"


class Transaction(Event):
    """A card payment at a terminal, as it happens (no fraud label)."""

    transaction_id: EntityId = Field(description="Globally unique transaction id; the dedupe key.")
    event_time: UtcDatetime = Field(description="When the payment happened (event time).")
    customer_id: EntityId = Field(description="Card / customer id; the partition key.")
    terminal_id: EntityId | None = Field(
        default=None, description="Terminal (merchant) id, absent when unknown."
    )
    amount: float = Field(ge=0, allow_inf_nan=False, description="Amount in major currency units.")
    currency: str = Field(default="EUR", min_length=3, max_length=3)


class Label(Event):
    """The fraud tag of a past transaction, known only later (chargeback, investigation).

    Carries the transaction's entities and event time so label-delayed features
    (e.g. terminal risk) can be joined in event time without a lookup.
    """

    transaction_id: EntityId
    customer_id: EntityId
    terminal_id: EntityId | None = None
    transaction_time: UtcDatetime = Field(description="Event time of the labelled transaction.")
    labeled_at: UtcDatetime = Field(description="When the label became known (event time).")
    is_fraud: bool
    fraud_scenario: int | None = Field(
        default=None, ge=0, description="Simulator scenario id (0 = genuine), when known."
    )


class FeatureVector(Event):
    """A transaction enriched with its point-in-time feature values, for the scorer."""

    transaction_id: EntityId
    customer_id: EntityId
    terminal_id: EntityId | None = None
    event_time: UtcDatetime
    amount: float = Field(ge=0, allow_inf_nan=False)
    feature_set: str = Field(min_length=1, description="Feature set name, e.g. 'baseline'.")
    feature_set_version: str = Field(min_length=1, description="Content hash of the definitions.")
    features: dict[str, float] = Field(description="Feature name -> value.")
    revision: int = Field(
        default=0,
        ge=0,
        description="0 for a transaction's first vector; n > 0 when a late event corrected it "
        "(consumers keep the highest revision per transaction).",
    )
    computed_at: UtcDatetime


class ModelRole(StrEnum):
    """Why a model scored: the champion decides, shadows are only observed."""

    CHAMPION = "champion"
    SHADOW = "shadow"


class Prediction(Event):
    """A champion model's score for one transaction."""

    transaction_id: EntityId
    customer_id: EntityId
    event_time: UtcDatetime
    model_name: str = Field(min_length=1)
    model_version: str = Field(min_length=1)
    role: Literal[ModelRole.CHAMPION] = ModelRole.CHAMPION
    score: float = Field(ge=0, le=1, allow_inf_nan=False)
    latency_ms: float = Field(ge=0, description="Scoring time of this row (ms).")
    scored_at: UtcDatetime


class ShadowScore(Event):
    """A shadow (challenger) model's score; never used to decide."""

    transaction_id: EntityId
    customer_id: EntityId
    event_time: UtcDatetime
    model_name: str = Field(min_length=1)
    model_version: str = Field(min_length=1)
    role: Literal[ModelRole.SHADOW] = ModelRole.SHADOW
    score: float = Field(ge=0, le=1, allow_inf_nan=False)
    latency_ms: float = Field(ge=0)
    scored_at: UtcDatetime
    champion_version: str | None = Field(
        default=None, description="The champion version live when this shadow scored."
    )


class Outcome(StrEnum):
    """What the decision service answers."""

    APPROVE = "approve"
    REVIEW = "review"
    DECLINE = "decline"


class FiredRule(BaseModel):
    """One rule that matched, with the reason code shown to analysts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str = Field(min_length=1)
    reason_code: str = Field(min_length=1)
    outcome: Outcome | None = None


class Decision(Event):
    """The decision returned for a transaction, as logged and published."""

    transaction_id: EntityId
    customer_id: EntityId
    event_time: UtcDatetime
    outcome: Outcome
    score: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    model_name: str | None = None
    model_version: str | None = None
    rule_set_version: str = Field(min_length=1)
    fired_rules: list[FiredRule] = Field(default_factory=list)
    arm: str | None = Field(default=None, description="Canary / A-B arm that served the request.")
    degraded: bool = Field(default=False, description="True when the fallback rule set answered.")
    latency_ms: float = Field(ge=0)
    decided_at: UtcDatetime
    inputs: dict[str, float | str | None] = Field(
        default_factory=dict,
        description=(
            "What the rules saw: features, score and request fields. Logged so a "
            "candidate rule set can be backtested on the decisions it would have changed."
        ),
    )


class DriftMetric(StrEnum):
    """Distribution-distance measures the drift monitor computes."""

    PSI = "psi"
    KL = "kl"
    JS = "js"


class DriftAlert(Event):
    """A feature's (or the score's) distribution moved past its threshold."""

    alert_id: EntityId
    subject: str = Field(min_length=1, description="Feature name, or 'score'.")
    metric: DriftMetric
    value: float = Field(allow_inf_nan=False)
    threshold: float
    window_start: UtcDatetime
    window_end: UtcDatetime
    model_name: str | None = None
    model_version: str | None = None
    raised_at: UtcDatetime


class RetrainRequest(Event):
    """Ask the retrain worker for a new challenger trained on recent data."""

    request_id: EntityId
    model_name: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    alert_ids: list[str] = Field(default_factory=list)
    data_start: UtcDatetime | None = None
    data_end: UtcDatetime | None = None
    requested_at: UtcDatetime


class ModelEventKind(StrEnum):
    """What happened to a registered model."""

    REGISTERED = "registered"
    ALIAS_SET = "alias_set"
    ALIAS_REMOVED = "alias_removed"


class ModelEvent(Event):
    """A registry change; scorers hot-reload on alias changes."""

    event_id: EntityId
    kind: ModelEventKind
    model_name: str = Field(min_length=1)
    version: str | None = None
    alias: str | None = None
    previous_version: str | None = None
    actor: str = Field(min_length=1)
    reason: str = ""
    occurred_at: UtcDatetime


def utcnow() -> datetime:
    """The current time, timezone-aware (events reject naive datetimes)."""
    return datetime.now(UTC)
