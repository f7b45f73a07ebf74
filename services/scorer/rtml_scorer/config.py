"""Scorer configuration (environment variables ``RTML_SCORER_*``).

Only what this service decides lives here. Kafka, MLflow and telemetry
settings come from :mod:`rtml_common.config` (listed in ``SHARED_SETTINGS_USED``)
so every service spells them the same way and docker-compose can be checked
against one set of names.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from rtml_common.config import KafkaSettings, MlflowSettings, TelemetrySettings

ENV_PREFIX = "RTML_SCORER_"

#: Shared settings classes this service reads (validated at start-up too).
SHARED_SETTINGS_USED: tuple[type[BaseSettings], ...] = (
    KafkaSettings,
    MlflowSettings,
    TelemetrySettings,
)


class Settings(BaseSettings):
    """Which model scores ``features`` and how shadow models ride along (issue #5)."""

    # Empty values count as unset so compose's ``${VAR:-}`` falls back to the default.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, env_ignore_empty=True
    )

    model_name: str = Field(
        default="fraud-detector",
        min_length=1,
        description="Registered model whose champion alias scores, and whose shadows are run.",
    )
    consumer_group: str = Field(
        default="rtml-scorer",
        min_length=1,
        description="Kafka consumer group for features, model-events and labels.",
    )
    shadow_sample_percent: float = Field(
        default=100.0,
        ge=0,
        le=100,
        description=(
            "Percentage of transactions also scored by shadow models; 0 turns shadow "
            "scoring off. Lower it when shadows are slow and traffic is high."
        ),
    )
    shadow_failure_limit: int = Field(
        default=5,
        ge=1,
        description=(
            "Consecutive failures after which a shadow model is detached, so a broken "
            "challenger cannot slow down or crash the champion path."
        ),
    )
