"""Shadow-auditor configuration (environment variables ``RTML_SHADOW_AUDITOR_*``).

Own settings only, see :class:`rtml_common.service_config.ServiceSettings`; the
shared classes it reads are listed in ``SHARED_SETTINGS_USED``.

Times are event time (the streams' clocks), except ``evaluate_interval_s``,
``exit_when_idle_s`` and ``registry_timeout_s``, which are wall-clock.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from rtml_common.config import KafkaSettings, TelemetrySettings
from rtml_common.service_config import (
    ServiceSettings,
    SettingsClasses,
    check_api_key,
    consumer_group_field,
    http_host_field,
    http_port_field,
    model_name_field,
)

ENV_PREFIX = "RTML_SHADOW_AUDITOR_"

#: Shared settings classes this service reads (validated at start-up too). MLflow is
#: not read: the auditor talks to the registry service, whose gate guards promotions.
SHARED_SETTINGS_USED: SettingsClasses = (KafkaSettings, TelemetrySettings)

#: Whole seconds, so the documented defaults read as plain numbers.
DAY_S = 24 * 3600


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
    graduation_min_frauds: int = Field(
        default=20,
        ge=1,
        description=(
            "Frauds among those labelled transactions before any verdict: AP over a handful "
            "of positives swings by more than any sensible margin."
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
    max_errors: int = Field(
        default=0,
        ge=0,
        description=(
            "Errors (scores for another champion version, other model names) a shadow may "
            "have in the window and still graduate."
        ),
    )
    auto_promote: bool = Field(
        default=False,
        description=(
            "Move the champion alias to a graduated shadow automatically; off means the "
            "verdict is only reported and a person promotes."
        ),
    )
    decision_threshold: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Score at which a transaction is flagged; agreement is measured there.",
    )
    window_s: float = Field(
        default=7 * DAY_S,
        gt=0,
        description=(
            "Sliding event-time window (ending at the newest scored transaction) for latency, "
            "score distribution, PSI, agreement and error counts."
        ),
    )
    label_window_s: float = Field(
        default=28 * DAY_S,
        gt=0,
        description=(
            "Transactions this recent (event time, to the newest scored one) count for AUC, "
            "AP and card precision once labelled; longer than window_s because labels lag."
        ),
    )
    state_horizon_s: float = Field(
        default=35 * DAY_S,
        gt=0,
        description=(
            "Scores and labels of transactions older than this (event time) are pruned from "
            "the state; must cover label_window_s and window_s."
        ),
    )
    max_rows: int = Field(
        default=2_000_000,
        ge=1000,
        description=(
            "Most score rows kept in the state; beyond it the oldest (event time) go first, "
            "so a traffic burst cannot grow the disk without bound."
        ),
    )
    card_precision_k: int = Field(
        default=100, ge=1, description="Cards an investigator checks per day (card precision@k)."
    )
    psi_bins: int = Field(
        default=10, ge=2, le=100, description="Bins (champion-score quantiles) of the PSI."
    )
    state_dir: Path = Field(
        default=Path(".rtml/shadow-auditor"),
        description=(
            "Folder of the SQLite state (joined scores, labels, consumed offsets, verdicts); "
            "created if missing. Keep it on a volume: it is what makes restarts exact."
        ),
    )
    report_dir: Path = Field(
        default=Path(".rtml/shadow-auditor/reports"),
        description="Folder the HTML audit report is written to after every evaluation.",
    )
    evaluate_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="Wall-clock seconds between evaluations (metrics, verdicts, report).",
    )
    registry_url: str = Field(
        default="http://127.0.0.1:8000",
        min_length=1,
        description="Base URL of the model-registry service that moves aliases.",
    )
    registry_api_key: SecretStr | None = Field(
        default=None,
        description="X-API-Key for registry writes; unset means promotions cannot be applied.",
    )
    registry_timeout_s: float = Field(
        default=180.0,
        gt=0,
        description="HTTP timeout of registry calls (its gate runs a model in a subprocess).",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description=(
            "Key (16+ characters) a person sends as X-API-Key to approve a recommendation; "
            "unset turns approvals off (403)."
        ),
    )
    http_host: str = http_host_field()
    http_port: int = http_port_field(default=8005)
    exit_when_idle_s: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Stop (exit 0) after this many seconds without input once partitions are "
            "assigned, after a last evaluation; 0 runs until SIGTERM. For tests and demos."
        ),
    )

    @field_validator("api_key", "registry_api_key")
    @classmethod
    def _key_is_long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        return check_api_key(key)

    @model_validator(mode="after")
    def _horizon_covers_windows(self) -> Settings:
        if self.state_horizon_s < max(self.window_s, self.label_window_s):
            raise ValueError("state_horizon_s must be >= window_s and label_window_s "
                             "(pruned rows would leave the windows)")
        return self

    @property
    def state_db(self) -> Path:
        """The SQLite state file."""
        return self.state_dir / "state.sqlite"
