"""Drift-monitor configuration (environment variables ``RTML_DRIFT_MONITOR_*``).

Own settings only, see :class:`rtml_common.service_config.ServiceSettings`; the
shared classes it reads are listed in ``SHARED_SETTINGS_USED``.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from rtml_common.config import KafkaSettings, TelemetrySettings
from rtml_common.service_config import (
    ServiceSettings,
    SettingsClasses,
    consumer_group_field,
    model_name_field,
)

ENV_PREFIX = "RTML_DRIFT_MONITOR_"

#: Shared settings classes this service reads (validated at start-up too).
SHARED_SETTINGS_USED: SettingsClasses = (KafkaSettings, TelemetrySettings)


class RetrainPolicy(StrEnum):
    """What a confirmed drift alert leads to."""

    #: Only publish ``drift-alerts``; retraining is someone's decision.
    NEVER = "never"
    #: Also publish a ``retrain-requests`` event (at most one per cooldown).
    ON_ALERT = "on-alert"


class Settings(ServiceSettings):
    """How drift is measured, confirmed and acted on (issue #7)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    model_name: str = model_name_field(
        "Model whose input features and scores are watched; named in alerts."
    )
    consumer_group: str = consumer_group_field(
        "rtml-drift-monitor", "Kafka consumer group for features and predictions."
    )
    window_size: int = Field(
        default=5000,
        ge=100,
        description=(
            "Events per comparison window; small windows make PSI noisy on rare feature values."
        ),
    )
    psi_threshold: float = Field(
        default=0.2,
        gt=0,
        description="Population stability index above which a feature (or the score) drifts.",
    )
    hysteresis_windows: int = Field(
        default=3,
        ge=1,
        description=(
            "Consecutive windows above the threshold before an alert, and below it before "
            "the alert clears, so one noisy window neither alerts nor flaps."
        ),
    )
    retrain_policy: RetrainPolicy = Field(
        default=RetrainPolicy.ON_ALERT,
        description="never: alert only; on-alert: also request a retrain.",
    )
    retrain_cooldown_s: int = Field(
        default=24 * 3600,
        ge=0,
        description="Minimum time between two retrain requests for the model.",
    )
