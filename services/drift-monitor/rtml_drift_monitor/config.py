"""Drift-monitor configuration (environment variables ``RTML_DRIFT_MONITOR_*``).

Own settings only, see :class:`rtml_common.service_config.ServiceSettings`; the
shared classes it reads are listed in ``SHARED_SETTINGS_USED``. Why each
default is what it is: ``docs/drift-monitor.md``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from rtml_common.config import KafkaSettings, MlflowSettings, TelemetrySettings
from rtml_common.service_config import (
    ServiceSettings,
    SettingsClasses,
    consumer_group_field,
    model_name_field,
)
from rtml_drift_monitor.alerts import DEFAULT_JS_THRESHOLD

ENV_PREFIX = "RTML_DRIFT_MONITOR_"

#: Shared settings classes this service reads (validated at start-up too).
SHARED_SETTINGS_USED: SettingsClasses = (KafkaSettings, MlflowSettings, TelemetrySettings)

DAY_S = 86_400

#: Tumbling-window thresholds that differ from the global one by default.
#: The weekend flag is a function of the clock: a Saturday window is all
#: weekend, so on a window shorter than a week its PSI is huge on perfectly
#: stationary data. It is watched on the 7-day sliding window instead.
DEFAULT_TUMBLING_THRESHOLDS: dict[str, float | None] = {"tx_during_weekend": None}


class RetrainPolicy(StrEnum):
    """What a confirmed drift alert leads to."""

    #: Only publish ``drift-alerts``; retraining is someone's decision.
    NEVER = "never"
    #: Also publish a ``retrain-requests`` event (at most one per cooldown).
    ON_ALERT = "on-alert"


def _check_thresholds(value: dict[str, float | None]) -> dict[str, float | None]:
    for subject, threshold in value.items():
        if threshold is not None and not threshold > 0:
            raise ValueError(f"{subject}: threshold {threshold} must be > 0 (or null: not alerted)")
    return value


class Settings(ServiceSettings):
    """How drift is measured, confirmed and acted on (issue #7)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    model_name: str = model_name_field(
        "Model whose input features and scores are watched; its champion's reference "
        "distributions are the baseline and alerts name it."
    )
    consumer_group: str = consumer_group_field(
        "rtml-drift-monitor", "Kafka consumer group for features and predictions."
    )
    window_s: int = Field(
        default=DAY_S,
        ge=60,
        description=(
            "Tumbling window length in event-time seconds, aligned to the epoch (UTC "
            "midnight for whole days). Whole days keep time-of-day seasonality out."
        ),
    )
    sliding_window_s: int = Field(
        default=7 * DAY_S,
        ge=0,
        description=(
            "Sliding window length in event-time seconds, a multiple of window_s (the hop); "
            "a whole week keeps weekly seasonality out. 0 turns sliding windows off."
        ),
    )
    allowed_lateness_s: int = Field(
        default=3600,
        ge=0,
        description=(
            "A window closes when every partition's event time has passed its end by this "
            "much; events for a closed window are counted as late and ignored."
        ),
    )
    idle_partition_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "An assigned partition that delivers nothing for this long (wall clock) stops "
            "holding windows open; until then every assigned partition must report first."
        ),
    )
    start_at: datetime | None = Field(
        default=None,
        description=(
            "Event time before which features and scores are consumed but not measured "
            "(ISO 8601). For replays whose first days only fill the 30-day feature windows: "
            "that warm-up differs from the reference for real and would alert."
        ),
    )
    min_window_events: int = Field(
        default=1000,
        ge=1,
        description=(
            "Values a window needs (per subject) to be evaluated: below it PSI is mostly "
            "sampling noise (about (bins - 1) / n)."
        ),
    )
    psi_threshold: float = Field(
        default=0.2,
        gt=0,
        description="PSI above which a feature (or the score) drifts, unless overridden.",
    )
    js_threshold: float = Field(
        default=DEFAULT_JS_THRESHOLD,
        gt=0,
        description=(
            "Jensen-Shannon divergence (nats) of the category frequencies above which a "
            "categorical feature (a category code) drifts, unless overridden."
        ),
    )
    psi_thresholds: dict[str, float | None] = Field(
        default_factory=dict,
        description=(
            "Per-subject thresholds as JSON (feature name or \"score\"), for every "
            "window kind, in the subject's metric (PSI; JS for a categorical feature); "
            "null means the subject is measured but never alerted."
        ),
    )
    tumbling_psi_thresholds: dict[str, float | None] = Field(
        default_factory=lambda: dict(DEFAULT_TUMBLING_THRESHOLDS),
        description=(
            "Per-subject overrides for tumbling windows only (JSON; null = not alerted). "
            "Default: the weekend flag, a function of the clock on windows under a week."
        ),
    )
    raise_after_windows: int = Field(
        default=1,
        ge=1,
        description=(
            "Consecutive evaluated windows over the threshold before an alert is raised; "
            "1 alerts on the first drifting window."
        ),
    )
    clear_after_windows: int = Field(
        default=3,
        ge=1,
        description=(
            "Consecutive evaluated windows under the clear threshold before a raised "
            "alert clears (and the subject can alert again)."
        ),
    )
    clear_ratio: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Clear threshold as a fraction of the raise threshold (hysteresis band).",
    )
    retrain_policy: RetrainPolicy = Field(
        default=RetrainPolicy.ON_ALERT,
        description="never: alert only; on-alert: also request a retrain.",
    )
    retrain_cooldown_s: int = Field(
        default=7 * DAY_S,
        ge=0,
        description=(
            "Minimum event time between two retrain requests for the model (between the "
            "ends of the windows that triggered them). A week: a retrain needs days of "
            "labelled new behaviour anyway, and drift keeps alerting while it lasts."
        ),
    )
    training_lookback_s: int = Field(
        default=21 * DAY_S,
        gt=0,
        description=(
            "A retrain request asks for data from the alerting window's end minus this; "
            "21 days = the default split (7 train + 7 label delay + 7 test)."
        ),
    )
    refresh_interval_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "The champion alias is re-read this often besides on model-events (a missed "
            "event or a failed reference load is retried)."
        ),
    )
    state_dir: Path = Field(
        default=Path(".rtml/drift-monitor"),
        description=(
            "Folder of the checkpoint (window counts, alert states, retrain cooldown and the "
            "input offsets they cover); created if missing. Keep it on a volume: it is what "
            "makes a restart count every record once and finish the windows open at a crash."
        ),
    )
    checkpoint_interval_s: float = Field(
        default=5.0,
        ge=0,
        description=(
            "Outputs flushed and the checkpoint written at most this often (wall clock), on "
            "idle and at stop; a crash replays at most this much input onto the last one. "
            "0 = after every batch."
        ),
    )
    exit_when_idle_s: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Stop (exit 0) after this many seconds without input once partitions are "
            "assigned; 0 runs until SIGTERM. For catch-up jobs, tests and demos."
        ),
    )

    @field_validator("psi_thresholds", "tumbling_psi_thresholds")
    @classmethod
    def _check_thresholds(cls, value: dict[str, float | None]) -> dict[str, float | None]:
        return _check_thresholds(value)

    @model_validator(mode="after")
    def _check_sliding(self) -> Settings:
        if self.sliding_window_s % self.window_s:
            raise ValueError(f"sliding_window_s ({self.sliding_window_s}) must be a multiple "
                             f"of window_s ({self.window_s}), its hop")
        return self

    @property
    def checkpoint_path(self) -> Path:
        """The checkpoint file in :attr:`state_dir`."""
        return self.state_dir / "checkpoint.json"
