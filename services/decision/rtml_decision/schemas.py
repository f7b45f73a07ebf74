"""Request and response bodies of the API, with the examples shown in OpenAPI.

The request body is :class:`rtml_common.events.Transaction` itself (strict:
unknown fields, a negative amount or a naive datetime are precise 422s), so
the API accepts exactly what the ``transactions`` topic carries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rtml_common.events import FiredRule, Outcome

TRANSACTION_EXAMPLES: dict[str, dict[str, Any]] = {
    "payment": {
        "summary": "A card payment at a terminal",
        "value": {"transaction_id": "tx-000042", "event_time": "2018-04-01T12:34:56Z",
                  "customer_id": "c-1234", "terminal_id": "t-77", "amount": 57.16,
                  "currency": "EUR"},
    },
    "no_terminal": {
        "summary": "Terminal unknown (card-not-present)",
        "value": {"transaction_id": "tx-000043", "event_time": "2018-04-01T03:10:00+02:00",
                  "customer_id": "c-1234", "amount": 910.0},
    },
}


class Contribution(BaseModel):
    """One feature's share of the score, in log-odds (XGBoost ``pred_contribs``)."""

    feature: str
    value: float = Field(description="The feature's value in this request.")
    contribution: float
    method: Literal["treeshap", "path"] = Field(
        default="treeshap",
        description=("treeshap: exact SHAP value; path: the change along the path this "
                     "request took through each tree (Saabas), used for approvals by default"))


class DecisionOut(BaseModel):
    """The decision for one transaction (a retry returns the same body)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "transaction_id": "tx-000042", "outcome": "review", "score": 0.71,
        "model_name": "fraud-detector", "model_version": "3", "arm": "champion",
        "rule_set": "default", "rule_set_version": "2024.06.1",
        "fired_rules": [{"rule": "high_score", "reason_code": "R_SCORE_HIGH",
                         "outcome": "review"}],
        "contributions": [{"feature": "terminal_id_risk_7day_window", "value": 0.4,
                           "contribution": 1.83}],
        "degraded": False, "degraded_reason": None, "latency_ms": 2.4,
        "decided_at": "2018-04-01T12:34:56.120000Z"}]})

    transaction_id: str
    outcome: Outcome
    score: float | None = Field(description="Model score in [0, 1]; null when degraded.")
    model_name: str | None
    model_version: str | None
    arm: str | None = Field(description="Canary / A-B arm (model alias) that scored.")
    rule_set: str
    rule_set_version: str
    fired_rules: list[FiredRule]
    contributions: list[Contribution] = Field(
        description="Top features by absolute contribution (empty when degraded).")
    degraded: bool = Field(description="True when the fallback rule set answered.")
    degraded_reason: str | None = Field(
        description="redis_unavailable, out_of_range, timeout, no_model, model_error or "
                    "rules_error.")
    latency_ms: float = Field(description="Time taken to decide, inside the service.")
    decided_at: datetime


class RuleSetOut(BaseModel):
    """The active rule sets."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "default", "version": "2024.06.1", "revision": 7,
        "inputs": ["score", "tx_amount"],
        "source": "upload", "activated_at": "2024-06-01T10:00:00Z",
        "fallback_name": "fallback", "fallback_version": "2024.06.1"}]})

    name: str
    version: str
    revision: int = Field(description=(
        "Revision of the activation in the shared rule store, the same in every worker and "
        "replica once they caught up; 0: the configured file (nothing uploaded yet)."))
    inputs: list[str]
    source: str
    activated_at: datetime
    fallback_name: str
    fallback_version: str


class LabelMetricsOut(BaseModel):
    """How one side's decisions fared on the labelled rows."""

    frauds: int
    genuine: int
    caught: int = Field(description="Frauds declined or reviewed.")
    declined: int
    missed: int = Field(description="Frauds approved.")
    false_positives: int = Field(description="Genuine transactions declined or reviewed.")
    false_declines: int
    recall: float | None
    precision: float | None


class ChangedDecision(BaseModel):
    transaction_id: str
    before: Outcome
    after: Outcome


class BacktestReport(BaseModel):
    """How decisions would change under a candidate rule set (nothing is activated)."""

    candidate: str
    candidate_version: str
    baseline: str = Field(description="The active rule set re-evaluated on the same rows.")
    rows: int = Field(description="Logged decisions read (0 when the window has none).")
    evaluated: int
    skipped: int = Field(description="Rows lacking a required input of a rule set.")
    before: dict[str, int]
    after: dict[str, int]
    before_rates: dict[str, float]
    after_rates: dict[str, float]
    transitions: dict[str, dict[str, int]] = Field(
        description="before outcome -> after outcome -> count.")
    changed: int
    labelled: int
    before_labels: LabelMetricsOut | None
    after_labels: LabelMetricsOut | None
    rule_fires: dict[str, int]
    rule_errors: dict[str, int]
    changed_examples: list[ChangedDecision]
    skipped_examples: list[str]


class Health(BaseModel):
    status: str
    models: dict[str, str] = Field(description="Alias -> version being served.")
    rule_set_version: str
    rule_set_revision: int = Field(description="Shared rule-set revision (0: the file).")
    admin_enabled: bool


RULES_YAML_EXAMPLE = """name: default
version: "2024.06.2"
rules:
  - {name: high_score, when: "score >= 0.8", outcome: decline, reason: R_SCORE_HIGH}
  - {name: big_amount, when: "amount >= 1000", outcome: review, reason: LARGE_AMOUNT}
"""
