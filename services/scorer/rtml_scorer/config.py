"""Scorer configuration (environment variables ``RTML_SCORER_*``).

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

ENV_PREFIX = "RTML_SCORER_"

#: Shared settings classes this service reads (validated at start-up too).
SHARED_SETTINGS_USED: SettingsClasses = (KafkaSettings, MlflowSettings, TelemetrySettings)


class Settings(ServiceSettings):
    """Which model scores ``features`` and how shadow models ride along (issue #5)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    model_name: str = model_name_field(
        "Registered model whose champion alias scores, and whose shadows are run."
    )
    consumer_group: str = consumer_group_field(
        "rtml-scorer", "Kafka consumer group for features, model-events and labels."
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
