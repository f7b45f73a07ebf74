"""Model-registry configuration (environment variables ``RTML_MODEL_REGISTRY_*``).

Own settings only, see :class:`rtml_common.service_config.ServiceSettings`; the
shared classes it reads are listed in ``SHARED_SETTINGS_USED``.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from rtml_common.config import KafkaSettings, MlflowSettings, TelemetrySettings
from rtml_common.service_config import (
    MIN_API_KEY_LENGTH,
    ServiceSettings,
    SettingsClasses,
    check_api_key,
    http_host_field,
    http_port_field,
)

ENV_PREFIX = "RTML_MODEL_REGISTRY_"

#: Shared settings classes this service reads (validated at start-up too).
SHARED_SETTINGS_USED: SettingsClasses = (KafkaSettings, MlflowSettings, TelemetrySettings)


class Settings(ServiceSettings):
    """The registry HTTP API over MLflow and its promotion gate (issue #4)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    http_host: str = http_host_field()
    http_port: int = http_port_field(default=8000)
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
        return check_api_key(key)
