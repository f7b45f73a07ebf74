"""Typed, versioned event contracts for every rtml topic.

Every event carries a ``schema_version`` class constant that producers write
into the ``rtml-schema-version`` Kafka header (see :mod:`rtml_common.serde`).
A consumer that sees a major version it does not know refuses the record to
the dead-letter topic instead of guessing at its meaning.

The handbook's :class:`Transaction` and :class:`Label` are not written here:
they are generated (:func:`rtml_common.schema_models.event_model`) from their
declarations in :mod:`rtml_common.handbook`, like any user's event, and so are
their lean decoders and JSON Schemas. The end of this module spells their
fields out for type checkers.

Events are immutable (``frozen``) and strict about unknown fields
(``extra="forbid"``): a typo in a non-Python producer's field name must be a
dead-lettered record with a precise reason, not a silently dropped value.

Times are timezone-aware UTC ``datetime``s, on the wire as RFC 3339 strings
(``2018-04-01T12:00:00Z``, any offset, the ``date-time`` format of the JSON
Schemas); naive datetimes are rejected because a fraud feature window computed
in the wrong timezone is silently wrong for hours.

Strict types: what the JSON Schemas say is what is accepted, in JSON
(``model_validate_json``, the consumers) and in Python (``model_validate``,
e.g. FastAPI's request bodies) alike. A time must be an RFC 3339 string (or a
``datetime`` in Python), never a unix number or another date spelling; an
amount, a fraud flag, a scenario, feature values and a revision must be JSON
numbers / booleans, never ``"12.5"`` or ``true`` for a number. Pydantic's lax
mode would convert those, so a producer's bug would go unnoticed.

Amounts are finite, non-negative and at most :data:`MAX_AMOUNT`
(``RTML_CONTRACT_MAX_AMOUNT``, default 1e9, see
:class:`rtml_common.config.ContractSettings`): a valid but absurd amount
(1e308) would otherwise overflow window sums to ``inf`` and poison every later
feature vector of its customer.

>>> from datetime import datetime, timezone
>>> tx = Transaction(transaction_id="42", event_time=datetime(2018, 4, 1, 12, tzinfo=timezone.utc),
...                  customer_id="c1", terminal_id="t7", amount=57.16)
>>> tx.amount
57.16
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Strict,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from rtml_common.config import ContractSettings

#: Largest amount an event may carry (``RTML_CONTRACT_MAX_AMOUNT``, read once, here).
MAX_AMOUNT: float = ContractSettings().max_amount

#: RFC 3339's ``date-time`` (section 5.6: ``T`` / ``Z`` in either case, any number of
#: fractional digits), the offset made optional only so that a naive time gets the
#: timezone check's own message. ASCII digits: the same in Python's and Rust's regex.
RFC3339_DATETIME = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
                    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?")
_rfc3339_datetime = re.compile(RFC3339_DATETIME).fullmatch
NOT_RFC3339 = "Input should be an RFC 3339 date-time string, e.g. 2018-04-01T12:00:00Z"
_NOT_RFC3339_TYPE = "datetime_rfc3339"


def _rfc3339_or_datetime(value: Any) -> Any:
    """Python mode: a ``datetime``, or a string spelled as RFC 3339 (then parsed by pydantic)."""
    if isinstance(value, str):
        if _rfc3339_datetime(value) is None:
            raise PydanticCustomError(_NOT_RFC3339_TYPE, NOT_RFC3339)
        return value
    if isinstance(value, datetime):
        return value
    raise PydanticCustomError(_NOT_RFC3339_TYPE, NOT_RFC3339)


class _Rfc3339:
    """Annotation restricting a ``datetime`` field to RFC 3339 strings (or datetimes).

    Pydantic's own datetime reads unix numbers (``1522585800``, also as a string)
    and other spellings (``2018-04-01 12:00:00Z``, ``+0200``). In JSON mode the
    check is a pattern on the string, in Rust (no Python call: the consumers'
    decode costs what it did); in Python mode a small function does the same. Both
    refuse with the same error type and message; the JSON Schema stays
    ``{"type": "string", "format": "date-time"}``.
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any,
                                     handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        parse = handler(source)
        spelled = core_schema.custom_error_schema(
            core_schema.str_schema(pattern=f"^{RFC3339_DATETIME}$", strict=True),
            custom_error_type=_NOT_RFC3339_TYPE, custom_error_message=NOT_RFC3339)
        return core_schema.json_or_python_schema(
            json_schema=core_schema.chain_schema([spelled, parse]),
            python_schema=core_schema.no_info_before_validator_function(
                _rfc3339_or_datetime, parse))

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return handler(core_schema.datetime_schema())


def _require_utc(value: datetime) -> datetime:
    """Reject naive datetimes and normalise aware ones to UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware (e.g. 2018-04-01T12:00:00Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: a refusal, not a crash
        raise ValueError("datetime is out of range once converted to UTC") from None


UtcDatetime = Annotated[datetime, _Rfc3339, AfterValidator(_require_utc)]
EntityId = Annotated[str, Field(min_length=1, max_length=128)]
#: A payment amount: a JSON number (strict: no string, no bool), finite, in [0, MAX_AMOUNT].
Amount = Annotated[float, Strict(), Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
#: A feature value: a finite JSON number (an online store or a model cannot use inf or nan).
FeatureValue = Annotated[float, Strict(), Field(allow_inf_nan=False)]


class Event(BaseModel):
    """Base of all events: immutable, strict, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    #: Semantic version of the event's schema: major bumps break consumers.
    schema_version: ClassVar[str] = "1.0"


class FeatureVector(Event):
    """A transaction enriched with its point-in-time feature values, for the scorer."""

    transaction_id: EntityId
    customer_id: EntityId
    terminal_id: EntityId | None = None
    event_time: UtcDatetime
    amount: Amount
    feature_set: str = Field(min_length=1, description="Feature set name, e.g. 'baseline'.")
    feature_set_version: str = Field(min_length=1, description="Content hash of the definitions.")
    features: dict[str, FeatureValue] = Field(description="Feature name -> value (finite).")
    revision: Annotated[int, Strict()] = Field(
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


# -- the handbook's transaction and label: generated from their one declaration ------------
# rtml_common.handbook declares them (TRANSACTION_SCHEMA, LABEL_SCHEMA); the models, the lean
# decoders and the JSON Schemas are generated from that (rtml_common.schema_models). The
# classes below are what type checkers read: the generated models' fields, written out
# (tests/test_schema_models.py builds them and holds them equal, field by field, in every
# accepted and refused record, to the generated ones).
# Imported here, at the end: schema_models builds on Event and UtcDatetime.
from rtml_common.handbook import LABEL_SCHEMA, TRANSACTION_SCHEMA  # noqa: E402
from rtml_common.schema_models import event_model  # noqa: E402

if TYPE_CHECKING:

    class Transaction(Event):
        """A card payment at a terminal, as it happens (no fraud label)."""

        transaction_id: EntityId = Field(
            description="Globally unique transaction id; the dedupe key.")
        event_time: UtcDatetime = Field(description="When the payment happened (event time).")
        customer_id: EntityId = Field(description="Card / customer id; the partition key.")
        terminal_id: EntityId | None = Field(
            default=None, description="Terminal (merchant) id, absent when unknown.")
        amount: Amount = Field(description="Amount in major currency units, at most "
                                           "RTML_CONTRACT_MAX_AMOUNT (default 1e9).")
        currency: str = Field(default="EUR", min_length=3, max_length=3)

    class Label(Event):
        """The fraud tag of a past transaction, known only later (chargeback, investigation).

        Carries the transaction's entities and event time so label-delayed features
        (e.g. terminal risk) can be joined in event time without a lookup.
        """

        transaction_id: EntityId
        customer_id: EntityId
        terminal_id: EntityId | None = None
        transaction_time: UtcDatetime = Field(
            description="Event time of the labelled transaction.")
        labeled_at: UtcDatetime = Field(
            description="When the label became known (event time).")
        is_fraud: Annotated[bool, Strict()]
        fraud_scenario: Annotated[int, Strict(), Field(ge=0)] | None = Field(
            default=None, description="Simulator scenario id (0 = genuine), when known.")

else:
    Transaction = event_model(TRANSACTION_SCHEMA, module=__name__)
    Label = event_model(LABEL_SCHEMA, module=__name__)


def utcnow() -> datetime:
    """The current time, timezone-aware (events reject naive datetimes)."""
    return datetime.now(UTC)
