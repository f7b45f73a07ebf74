"""Retrain-worker configuration (environment variables ``RTML_RETRAIN_WORKER_*``).

Own settings only, see :class:`rtml_common.service_config.ServiceSettings`; the
shared classes it reads are listed in ``SHARED_SETTINGS_USED``. The split
settings are explained in docs/retrain-worker.md ("Which data a retrain uses").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from rtml_common.config import KafkaSettings, MlflowSettings, TelemetrySettings
from rtml_common.service_config import (
    ServiceSettings,
    SettingsClasses,
    check_api_key,
    consumer_group_field,
    model_name_field,
)
from rtml_features.baseline import default_feature_set

ENV_PREFIX = "RTML_RETRAIN_WORKER_"

#: Shared settings classes this service reads (validated at start-up too).
SHARED_SETTINGS_USED: SettingsClasses = (KafkaSettings, MlflowSettings, TelemetrySettings)


class Settings(ServiceSettings):
    """Where the archive lives, how a retrain splits its data, and where the challenger goes."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    model_name: str = model_name_field(
        "Registered model this worker retrains; requests for other models are ignored."
    )
    consumer_group: str = consumer_group_field(
        "rtml-retrain-worker",
        "Kafka consumer group for transactions, labels and retrain-requests.",
    )
    archive_dir: Path = Field(
        default=Path(".rtml/retrain-worker"),
        description=(
            "Offline store: Parquet segments of transactions and labels, their offsets "
            "and the pending-requests file (keep it on a volume)."
        ),
    )
    segment_max_events: int = Field(
        default=100_000,
        ge=1,
        description="Buffered events (transactions + labels) that make a segment be written.",
    )
    segment_max_age_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Longest a consumed event waits in memory before its segment is written, so "
            "quiet streams still reach the archive (and label time still advances)."
        ),
    )
    retention_days: int = Field(
        default=120,
        ge=0,
        description=(
            "Segments whose newest event is this many days older (event time) than the "
            "archive's newest are deleted; 0 keeps everything."
        ),
    )
    feature_set: str = Field(default_factory=default_feature_set, min_length=1,
                             description="Feature set the challenger is trained on; its "
                                         "event schema's events are consumed from its topics "
                                         "and archived with every field (default: "
                                         "RTML_FEATURE_SET, else extended; a set of "
                                         "RTML_FEATURE_REPO's repo or the handbook's).")
    train_days: int = Field(default=14, ge=1,
                            description="Days of the training period (before the gap).")
    gap_days: int = Field(
        default=0,
        ge=0,
        description="Days between training and test period (neither trained nor tested on).",
    )
    test_days: int = Field(
        default=7,
        ge=1,
        description="Days of the test period: the most recent days whose labels are mature.",
    )
    label_maturity_days: float = Field(
        default=7.0,
        ge=0,
        description=(
            "Label time a transaction needs to have passed before its label counts as "
            "final; the test period ends this long before the archive's label time."
        ),
    )
    min_days_after_drift: int = Field(
        default=3,
        ge=0,
        description=(
            "Whole days after a request's data_end (the end of the drift monitor's "
            "alerting window) the training period must contain, so the challenger sees "
            "the new pattern; a burst of requests waits until labels allow it for its "
            "earliest request."
        ),
    )
    xgb_params: dict[str, Any] = Field(
        default_factory=dict,
        description="XGBoost parameters over the training defaults, as JSON.",
    )
    select: bool = Field(
        default=False,
        description=("Model selection before each retraining (rtml train --select: a seeded "
                     "search over prequential validation folds); off so the loop stays fast."),
    )
    select_trials: int = Field(default=20, ge=1, description="Trials of a selection.")
    select_timeout_s: float = Field(
        default=300.0, gt=0, description="Seconds after which a selection starts no new trial.")
    select_metric: Literal["ap", "auc", "cp"] = Field(
        default="ap", description="What a selection maximises over the validation folds.")
    calibration: Literal["auto", "platt", "isotonic", "none"] = Field(
        default="auto",
        description=("Calibration map fitted on validation weeks before the training period "
                     "and kept inside the model (auto: platt for XGBoost)."),
    )
    holdout_rows: int = Field(default=2000, ge=1,
                              description="Test rows logged for the registry's validation gate.")
    experiment: str | None = Field(
        default=None, description="MLflow experiment of the runs; unset: the model name."
    )
    training_attempts: int = Field(
        default=3,
        ge=1,
        description=(
            "Tries of a training that fails with an unexpected error (MLflow down) before "
            "its requests are marked failed; data problems fail at once."
        ),
    )
    check_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="How often segment age and pending requests are checked.",
    )
    registry_url: str = Field(
        default="http://127.0.0.1:8000",
        min_length=1,
        description="Base URL of the model-registry service (sets the challenger alias).",
    )
    registry_api_key: SecretStr | None = Field(
        default=None,
        description=(
            "X-API-Key for the registry's write endpoints (16+ characters); unset: versions "
            "are registered but not put in shadow (marked failed, say why)."
        ),
    )
    registry_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Time the registry gets to answer an alias change (its gate runs first).",
    )
    registry_attempts: int = Field(
        default=5,
        ge=1,
        description=(
            "Tries of an alias change the registry could not answer (network, 5xx); a gate "
            "refusal (409 / 422) is final at once."
        ),
    )
    exit_when_idle_s: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Stop (exit 0) after this many seconds without input once partitions are "
            "assigned and no trainable request is left; 0 runs until SIGTERM."
        ),
    )

    @field_validator("registry_api_key")
    @classmethod
    def _check_key(cls, value: SecretStr | None) -> SecretStr | None:
        return check_api_key(value)

    @field_validator("registry_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")
