"""Decision-API configuration (environment variables ``RTML_DECISION_*``).

Own settings only, see :class:`rtml_common.service_config.ServiceSettings`; the
shared classes it reads are listed in ``SHARED_SETTINGS_USED``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from rtml_common.config import (
    CassandraSettings,
    KafkaSettings,
    MlflowSettings,
    RedisSettings,
    TelemetrySettings,
)
from rtml_common.service_config import (
    MIN_API_KEY_LENGTH,
    ServiceSettings,
    SettingsClasses,
    check_api_key,
    http_host_field,
    http_port_field,
    model_name_field,
)
from rtml_features.baseline import default_feature_set

ENV_PREFIX = "RTML_DECISION_"

#: Shared settings classes this service reads (validated at start-up too).
SHARED_SETTINGS_USED: SettingsClasses = (
    KafkaSettings,
    RedisSettings,
    MlflowSettings,
    CassandraSettings,
    TelemetrySettings,
)


class Settings(ServiceSettings):
    """The synchronous decision API, its rules and its canary split (issue #6)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    http_host: str = http_host_field()
    http_port: int = http_port_field(default=8080)
    model_name: str = model_name_field(
        "Registered model whose champion (and canary arms) score requests."
    )
    feature_set: str = Field(
        default_factory=default_feature_set,
        min_length=1,
        description=(
            "Feature set (the configured feature repo's or the handbook's: baseline, "
            "extended) a request's features are computed with, from the prefix logs the "
            "feature pipeline writes for the same set (RTML_FEATURE_PIPELINE_FEATURE_SET); "
            "the models served must have been trained on it. Its event schema is the "
            "request body and what rules read; for now it must be a classic set over the "
            "handbook's transaction schema (refused at start-up otherwise, with the reason)."
        ),
    )
    rules_path: Path | None = Field(
        default=None,
        description=(
            "YAML file in the rules DSL; unset means the built-in default rule set. "
            "Checked when the service loads it, not here, so a reload can fix it."
        ),
    )
    admin_api_key: SecretStr | None = Field(
        default=None,
        description=(
            f"Key (at least {MIN_API_KEY_LENGTH} characters) required by admin endpoints "
            "(rules reload, canary weights); unset disables them rather than leaving them open."
        ),
    )
    request_timeout_ms: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description=(
            "Budget of one decision request; past it the fallback rules answer and the "
            "decision is marked degraded."
        ),
    )
    fallback_rules_path: Path | None = Field(
        default=None,
        description=(
            "YAML rule set answering degraded requests (no score, no online features); "
            "unset means the built-in fallback rule set."
        ),
    )
    idempotency_ttl_s: int = Field(
        default=86_400,
        ge=60,
        description=(
            "How long a decision is remembered by transaction id, so a retried request "
            "returns it instead of deciding (and producing) again."
        ),
    )
    top_contributions: int = Field(
        default=5, ge=0, le=50,
        description="Feature contributions (XGBoost pred_contribs) returned per decision.",
    )
    contributions: Literal["flagged", "all"] = Field(
        default="flagged",
        description=(
            "Which decisions are explained with exact TreeSHAP: flagged (review and decline; "
            "approvals get path contributions, about the cost of the score) or all (exact "
            "TreeSHAP, several times the score's cost, on every decision)."
        ),
    )
    workers: int = Field(
        default=1, ge=1, le=64,
        description=(
            "uvicorn worker processes; each loads the models and the rules and serves on the "
            "same port (a rules upload reaches every worker through the shared store)."
        ),
    )
    rules_key_prefix: str = Field(
        default="rtml:decision-rules:",
        min_length=1, max_length=200,
        description=(
            "Prefix of the Redis keys (and pub/sub channel) of the shared active rule set: "
            "every worker and replica with the same prefix decides with the same rules; "
            "deployments sharing a Redis with different rules need different prefixes."
        ),
    )
    rules_refresh_interval_s: float = Field(
        default=10.0, gt=0, le=3_600,
        description=(
            "How often each process re-reads the shared rule set's revision besides the "
            "activation announcements (catches one missed while Redis was unreachable)."
        ),
    )
    canary_key: Literal["customer_id", "transaction_id"] = Field(
        default="customer_id",
        description=(
            "Request field hashed to pick the canary arm: customer_id keeps a customer on "
            "one arm, transaction_id splits per payment."
        ),
    )
    log_writer: bool = Field(
        default=True,
        description=(
            "Run the Cassandra decision-log writer (consumer of decisions) inside the "
            "service; false when it runs as python -m rtml_decision.log_writer."
        ),
    )
    canary_weights: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Arm (model alias) -> relative traffic weight, as JSON, e.g. "
            '{"champion": 95, "challenger": 5}; empty sends everything to the champion.'
        ),
    )

    max_request_bytes: int = Field(
        default=16_384, ge=1_024, le=10_000_000,
        description=(
            "Largest body of POST /v1/decisions (a transaction is ~200 bytes); a longer "
            "one is refused with 413 while it is being read, before it is parsed."
        ),
    )
    rules_max_bytes: int = Field(
        default=1_000_000, ge=1_024, le=50_000_000,
        description=(
            "Largest rule set accepted by PUT /v1/admin/rules and the backtest (413 "
            "beyond it, refused while the body is read)."
        ),
    )
    rules_validation_timeout_s: float = Field(
        default=30.0, gt=0, le=3_600,
        description=(
            "Longest a rule-set validation (YAML, expressions, embedded tests) may run in "
            "its worker process; past it the process is killed and the upload refused (422)."
        ),
    )
    backtest_timeout_s: float = Field(
        default=300.0, gt=0, le=3_600,
        description=(
            "Longest a backtest evaluation may run in its worker process; past it the "
            "process is killed and the backtest refused (422)."
        ),
    )
    max_future_skew_s: float = Field(
        default=300.0, ge=0, le=366 * 86_400,
        description=(
            "How far ahead of the service's clock a transaction's event_time may be; a "
            "later one is refused with 422 (it would hold features and watermarks at a "
            "future time)."
        ),
    )
    max_event_age_s: float | None = Field(
        default=None, gt=0,
        description=(
            "How far behind the service's clock a transaction's event_time may be (422 "
            "beyond); unset accepts any past time (replays and benchmarks send 2018 times)."
        ),
    )

    @field_validator("feature_set")
    @classmethod
    def _known_feature_set(cls, name: str) -> str:
        """An unknown set would fail every request's features, and one the request path
        cannot compute yet (:func:`~rtml_decision.request_model.check_servable`) every
        decision: say so at start-up."""
        from rtml_decision.request_model import check_servable
        from rtml_features.baseline import get_feature_set

        try:
            check_servable(get_feature_set(name))
        except KeyError as error:
            raise ValueError(str(error)) from None
        return name

    @field_validator("rules_key_prefix")
    @classmethod
    def _outside_idempotency_keys(cls, prefix: str) -> str:
        """``rtml:decision:<id>`` are idempotency records: a transaction id could name ours."""
        from rtml_decision.request_store import DECISION_KEY_PREFIX

        if prefix.startswith(DECISION_KEY_PREFIX):
            raise ValueError(f"must not start with {DECISION_KEY_PREFIX!r} (the idempotency "
                             "records' keys, named by transaction ids)")
        if "{}" in prefix:  # an empty hash tag: a cluster would hash each whole key apart
            raise ValueError("must not contain '{}' (on a Redis Cluster the keys share a "
                             "hash tag; an empty one would split them over two slots)")
        return prefix

    @field_validator("admin_api_key")
    @classmethod
    def _key_is_long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        """Refuse a short key instead of protecting admin endpoints with it."""
        return check_api_key(key)

    @field_validator("canary_weights")
    @classmethod
    def _weights_are_a_split(cls, weights: dict[str, float]) -> dict[str, float]:
        """Reject weights that cannot describe a traffic split.

        A negative or infinite weight, or all-zero weights, would make arm
        selection undefined; failing at start-up beats routing nothing.
        """
        for arm, weight in weights.items():
            if not arm.strip():
                raise ValueError("arm names must not be empty")
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"weight of arm {arm!r} must be a finite number >= 0")
        if weights and sum(weights.values()) <= 0:
            raise ValueError("at least one arm needs a positive weight")
        return weights
