"""Model-registry configuration (environment variables ``RTML_MODEL_REGISTRY_*``).

Only what this service decides lives here. Kafka, MLflow and telemetry
settings come from :mod:`rtml_common.config` (listed in ``SHARED_SETTINGS_USED``)
so every service spells them the same way and docker-compose can be checked
against one set of names.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rtml_common.config import KafkaSettings, MlflowSettings, TelemetrySettings

ENV_PREFIX = "RTML_MODEL_REGISTRY_"

#: Shorter keys are guessable; an operator who sets one must set a real one.
MIN_API_KEY_LENGTH = 16

#: Shared settings classes this service reads (validated at start-up too).
SHARED_SETTINGS_USED: tuple[type[BaseSettings], ...] = (
    KafkaSettings,
    MlflowSettings,
    TelemetrySettings,
)


class Settings(BaseSettings):
    """The registry HTTP API over MLflow and its promotion gate (issue #4)."""

    # Empty values count as unset so compose's ``${VAR:-}`` falls back to the default.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, env_ignore_empty=True
    )

    http_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Bind address of the HTTP API (0.0.0.0 inside a container).",
    )
    http_port: int = Field(default=8000, ge=1, le=65535, description="Port of the HTTP API.")
    api_key: SecretStr | None = Field(
        default=None,
        description=(
            f"Key (at least {MIN_API_KEY_LENGTH} characters) required by write endpoints "
            "(register, set alias); unset makes the API read-only rather than open."
        ),
    )
    latency_budget_ms: float = Field(
        default=20.0,
        gt=0,
        description=(
            "p99 single-transaction inference latency a model version must meet before "
            "it may take the champion alias."
        ),
    )

    @field_validator("api_key")
    @classmethod
    def _key_is_long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        """Refuse a short key instead of protecting write endpoints with it."""
        if key is not None and len(key.get_secret_value()) < MIN_API_KEY_LENGTH:
            raise ValueError(f"must be at least {MIN_API_KEY_LENGTH} characters (or unset)")
        return key
