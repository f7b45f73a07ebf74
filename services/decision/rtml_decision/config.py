"""Decision-API configuration (environment variables ``RTML_DECISION_*``).

Only what this service decides lives here. Kafka, Redis, MLflow, Cassandra and
telemetry settings come from :mod:`rtml_common.config` (listed in
``SHARED_SETTINGS_USED``) so every service spells them the same way and
docker-compose can be checked against one set of names.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rtml_common.config import (
    CassandraSettings,
    KafkaSettings,
    MlflowSettings,
    RedisSettings,
    TelemetrySettings,
)

ENV_PREFIX = "RTML_DECISION_"

#: Shorter keys are guessable; an operator who sets one must set a real one.
MIN_API_KEY_LENGTH = 16

#: Shared settings classes this service reads (validated at start-up too).
SHARED_SETTINGS_USED: tuple[type[BaseSettings], ...] = (
    KafkaSettings,
    RedisSettings,
    MlflowSettings,
    CassandraSettings,
    TelemetrySettings,
)


class Settings(BaseSettings):
    """The synchronous decision API, its rules and its canary split (issue #6)."""

    # Empty values count as unset so compose's ``${VAR:-}`` falls back to the default.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, env_ignore_empty=True
    )

    http_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Bind address of the HTTP API (0.0.0.0 inside a container).",
    )
    http_port: int = Field(default=8080, ge=1, le=65535, description="Port of the HTTP API.")
    model_name: str = Field(
        default="fraud-detector",
        min_length=1,
        description="Registered model whose champion (and canary arms) score requests.",
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
    canary_weights: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Arm (model alias) -> relative traffic weight, as JSON, e.g. "
            '{"champion": 95, "challenger": 5}; empty sends everything to the champion.'
        ),
    )

    @field_validator("admin_api_key")
    @classmethod
    def _key_is_long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        """Refuse a short key instead of protecting admin endpoints with it."""
        if key is not None and len(key.get_secret_value()) < MIN_API_KEY_LENGTH:
            raise ValueError(f"must be at least {MIN_API_KEY_LENGTH} characters (or unset)")
        return key

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
