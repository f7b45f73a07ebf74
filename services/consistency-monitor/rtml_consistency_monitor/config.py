"""Consistency-monitor configuration (environment variables ``RTML_CONSISTENCY_MONITOR_*``).

Own settings only, see :class:`rtml_common.service_config.ServiceSettings`; the
shared classes it reads are listed in ``SHARED_SETTINGS_USED``. Every variable
is documented in the service's README with its default and the reason for it.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from rtml_common.config import KafkaSettings, TelemetrySettings
from rtml_common.service_config import ServiceSettings, consumer_group_field
from rtml_features.baseline import default_feature_set, get_feature_set

ENV_PREFIX = "RTML_CONSISTENCY_MONITOR_"

#: Shared settings classes this service reads (validated at start-up too).
SHARED_SETTINGS_USED = (KafkaSettings, TelemetrySettings)

#: Default key of the sampling hash. Not a secret: it only has to be the same for
#: every replica and stable over time, so an entity stays in (or out of) the sample.
DEFAULT_SAMPLE_KEY = "rtml-consistency-sample-v1"


class Settings(ServiceSettings):
    """Which decisions are re-computed, when, and what counts as a mismatch (issue #16)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    consumer_group: str = consumer_group_field(
        "rtml-consistency-monitor",
        "Kafka consumer group for transactions, labels and decisions.",
    )
    feature_set: str = Field(
        default_factory=default_feature_set,
        min_length=1,
        description=(
            "Registered feature set (rtml_features.baseline.REGISTRY) whose definitions the "
            "served values are re-computed with; decisions' inputs are matched by feature name."
        ),
    )
    sample_rate: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description=(
            "Fraction of entities (per entity kind) whose history is kept and whose decisions "
            "are checked: an entity is sampled when a keyed BLAKE2b of its kind and id falls "
            "under this fraction, so a sampled entity's history is complete."
        ),
    )
    sample_key: str = Field(
        default=DEFAULT_SAMPLE_KEY,
        description=(
            "Key of the sampling hash (at most 64 bytes). Keyed so that which entities are "
            "watched does not follow from their ids; change it to watch another sample."
        ),
    )
    allowed_lateness_s: int = Field(
        default=300,
        ge=0,
        description=(
            "A topic's watermark is its slowest active partition's newest event time minus "
            "this (the feature pipeline's default lateness): events up to this late still "
            "arrive before a decision that depends on them is checked."
        ),
    )
    idle_partition_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "An assigned partition that delivers nothing for this long (wall clock) stops "
            "holding the watermark back; until then every assigned partition must report."
        ),
    )
    decision_lateness_s: int = Field(
        default=3600,
        ge=0,
        description=(
            "History is kept this long (event time) beyond the feature set's horizon behind "
            "the slower of the decisions' and transactions' watermarks, so a decision read "
            "this late is still checked."
        ),
    )
    tolerance: float = Field(
        default=1e-9,
        ge=0,
        description="A served value is a mismatch when |served - batch| exceeds this.",
    )
    max_pending: int = Field(
        default=100_000,
        ge=1,
        description=(
            "Decisions waiting for their data held at most; beyond it new ones are dropped "
            "and counted (outcome dropped), so memory stays bounded when a watermark stalls."
        ),
    )
    check_batch_size: int = Field(
        default=5000,
        ge=1,
        description=(
            "Ready decisions re-computed per batch-engine call (one call has a fixed pandas "
            "overhead of milliseconds; a spine of thousands amortises it)."
        ),
    )
    check_interval_s: float = Field(
        default=5.0,
        ge=0,
        description=(
            "Ready decisions are re-computed at most this often (wall clock) unless "
            "CHECK_BATCH_SIZE of them are pending: a batch-engine call costs ~0.1 s whatever "
            "its size, so checking on every consumed batch would spend it on a few decisions."
        ),
    )
    max_diff_window_s: float = Field(
        default=600.0,
        gt=0,
        description=(
            "Wall-clock window of the rtml_consistency_max_abs_diff gauge: the largest "
            "difference per feature among the checks of the last this-many seconds."
        ),
    )
    max_clock_skew_s: int = Field(
        default=300,
        ge=0,
        description=(
            "A transaction or label stamped further than this ahead of the wall clock is "
            "ignored (counted): one far-future event must not push a watermark past every "
            "pending decision."
        ),
    )
    exit_when_idle_s: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Stop (exit 0) after this many seconds without input once partitions are "
            "assigned; 0 runs until SIGTERM. For tests and demos."
        ),
    )

    @field_validator("feature_set")
    @classmethod
    def _known_feature_set(cls, value: str) -> str:
        try:
            get_feature_set(value)
        except KeyError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("sample_key")
    @classmethod
    def _key_length(cls, value: str) -> str:
        if not 1 <= len(value.encode()) <= 64:
            raise ValueError("sample_key must be 1 to 64 bytes (a BLAKE2b key)")
        return value
