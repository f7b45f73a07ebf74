"""Drift-monitor configuration (environment variables ``RTML_DRIFT_MONITOR_*``).

Only what this service decides lives here. Kafka and telemetry settings come
from :mod:`rtml_common.config` (listed in ``SHARED_SETTINGS_USED``) so every
service spells them the same way and docker-compose can be checked against one
set of names.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from rtml_common.config import KafkaSettings, TelemetrySettings

ENV_PREFIX = "RTML_DRIFT_MONITOR_"

#: Shared settings classes this service reads (validated at start-up too).
SHARED_SETTINGS_USED: tuple[type[BaseSettings], ...] = (KafkaSettings, TelemetrySettings)


class RetrainPolicy(StrEnum):
    """What a confirmed drift alert leads to."""

    #: Only publish ``drift-alerts``; retraining is someone's decision.
    NEVER = "never"
    #: Also publish a ``retrain-requests`` event (at most one per cooldown).
    ON_ALERT = "on-alert"


class Settings(BaseSettings):
    """How drift is measured, confirmed and acted on (issue #7)."""

    # Empty values count as unset so compose's ``${VAR:-}`` falls back to the default.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, env_ignore_empty=True
    )

    model_name: str = Field(
        default="fraud-detector",
        min_length=1,
        description="Model whose input features and scores are watched; named in alerts.",
    )
    consumer_group: str = Field(
        default="rtml-drift-monitor",
        min_length=1,
        description="Kafka consumer group for features and predictions.",
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
