"""Shadow-auditor configuration (environment variables ``RTML_SHADOW_AUDITOR_*``).

Only what this service decides lives here. Kafka, MLflow and telemetry
settings come from :mod:`rtml_common.config` (listed in ``SHARED_SETTINGS_USED``)
so every service spells them the same way and docker-compose can be checked
against one set of names.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from rtml_common.config import KafkaSettings, MlflowSettings, TelemetrySettings

ENV_PREFIX = "RTML_SHADOW_AUDITOR_"

#: Shared settings classes this service reads (validated at start-up too).
SHARED_SETTINGS_USED: tuple[type[BaseSettings], ...] = (
    KafkaSettings,
    MlflowSettings,
    TelemetrySettings,
)


class Settings(BaseSettings):
    """When a shadow model has earned promotion (issue #7)."""

    # Empty values count as unset so compose's ``${VAR:-}`` falls back to the default.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, env_ignore_empty=True
    )

    model_name: str = Field(
        default="fraud-detector",
        min_length=1,
        description="Registered model whose champion and shadows are compared.",
    )
    consumer_group: str = Field(
        default="rtml-shadow-auditor",
        min_length=1,
        description="Kafka consumer group for predictions, shadow-scores and labels.",
    )
    graduation_min_labels: int = Field(
        default=1000,
        ge=1,
        description=(
            "Labelled transactions scored by both champion and shadow before any verdict; "
            "fraud is rare, so fewer labels make average precision mostly noise."
        ),
    )
    ap_margin: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Average precision by which a shadow must beat the champion to graduate.",
    )
    latency_sla_ms: float = Field(
        default=20.0,
        gt=0,
        description="p99 scoring latency a shadow must stay under to graduate.",
    )
    auto_promote: bool = Field(
        default=False,
        description=(
            "Move the champion alias to a graduated shadow automatically; off means the "
            "verdict is only reported and a person promotes."
        ),
    )
