"""Scorer configuration (environment variables ``RTML_SCORER_*``).

Own settings only, see :class:`rtml_common.service_config.ServiceSettings`; the
shared classes it reads are listed in ``SHARED_SETTINGS_USED``.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from rtml_common.config import KafkaSettings, MlflowSettings, TelemetrySettings
from rtml_common.service_config import (
    ServiceSettings,
    SettingsClasses,
    consumer_group_field,
    model_name_field,
)
from rtml_models.aliases import is_shadow_alias

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
        "rtml-scorer",
        "Kafka consumer group for features and labels (model-events are read by every "
        "process, outside the group).",
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
    shadow_sample_percents: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Per-shadow-alias percentages as JSON, e.g. {\"shadow-river\": 10}; aliases not "
            "listed use shadow_sample_percent. Decisions are deterministic by transaction id."
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
    shadow_latency_budget_ms: float = Field(
        default=250.0,
        gt=0,
        description=(
            "Longest one shadow may take to score one batch (up to RTML_KAFKA_BATCH_SIZE "
            "rows); a slower batch counts as a failure."
        ),
    )
    feature_cache_size: int = Field(
        default=200_000,
        ge=0,
        description=(
            "Recent feature vectors kept (by transaction id) so online models can learn "
            "when the label arrives; 0 disables online learning."
        ),
    )
    feature_cache_max_age_s: float = Field(
        default=8 * 24 * 3600.0,
        gt=0,
        description=(
            "Event-time age after which a cached vector is dropped (labels arrive up to "
            "the 7-day label delay later)."
        ),
    )
    label_buffer_size: int = Field(
        default=100_000,
        ge=1,
        description=(
            "Labels held until the features stream's event time reaches their labeled_at; "
            "beyond it new labels are dropped and counted."
        ),
    )
    checkpoint_interval_s: float = Field(
        default=600.0,
        ge=0,
        description=(
            "How often an online model that learned something is registered as a new "
            "version (parent = what it continued from); 0 = only on shutdown."
        ),
    )
    publication_checkpoint_interval_s: float = Field(
        default=5.0,
        ge=0,
        description=(
            "How often the output topics' ends are measured and, once the consumer loop has "
            "committed after the measurement, stored for the owned features partitions: "
            "after a crash or a rebalance, what was published since is read back and not "
            "published again. Bounds that read (about this plus the commit interval of "
            "output); 0 keeps the positions stored at a partition's first assignment."
        ),
    )
    refresh_interval_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Aliases are re-read this often besides on model-events (a missed event or a "
            "failed reload is retried)."
        ),
    )
    exit_when_idle_s: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Stop (exit 0) after this many seconds without input once partitions are "
            "assigned; 0 runs until SIGTERM. For catch-up jobs, tests and benchmarks."
        ),
    )

    @field_validator("shadow_sample_percents")
    @classmethod
    def _check_percents(cls, value: dict[str, float]) -> dict[str, float]:
        for alias, percent in value.items():
            if not is_shadow_alias(alias):
                raise ValueError(f"{alias!r} is not a shadow alias (challenger, shadow-*)")
            if not 0 <= percent <= 100:
                raise ValueError(f"{alias}: {percent} is not a percentage (0 to 100)")
        return value

    def sample_percent(self, alias: str) -> float:
        """The sampling percentage for shadow ``alias``."""
        return self.shadow_sample_percents.get(alias, self.shadow_sample_percent)
