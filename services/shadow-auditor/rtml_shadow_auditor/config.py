"""Shadow-auditor configuration (environment variables ``RTML_SHADOW_AUDITOR_*``).

Own settings only, see :class:`rtml_common.service_config.ServiceSettings`; the
shared classes it reads are listed in ``SHARED_SETTINGS_USED``.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from rtml_common.config import KafkaSettings, MlflowSettings, TelemetrySettings
from rtml_common.service_config import (
    ServiceSettings,
    SettingsClasses,
    consumer_group_field,
    model_name_field,
)

ENV_PREFIX = "RTML_SHADOW_AUDITOR_"

#: Shared settings classes this service reads (validated at start-up too).
SHARED_SETTINGS_USED: SettingsClasses = (KafkaSettings, MlflowSettings, TelemetrySettings)


class Settings(ServiceSettings):
    """When a shadow model has earned promotion (issue #7)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    model_name: str = model_name_field("Registered model whose champion and shadows are compared.")
    consumer_group: str = consumer_group_field(
        "rtml-shadow-auditor", "Kafka consumer group for predictions, shadow-scores and labels."
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
