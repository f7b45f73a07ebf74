"""Feature-pipeline configuration (environment variables ``RTML_FEATURE_PIPELINE_*``).

Own settings only, see :class:`rtml_common.service_config.ServiceSettings`; the
shared classes it reads are listed in ``SHARED_SETTINGS_USED``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from rtml_common.config import KafkaSettings, RedisSettings, TelemetrySettings
from rtml_common.service_config import ServiceSettings, SettingsClasses, consumer_group_field
from rtml_features.baseline import default_feature_set

ENV_PREFIX = "RTML_FEATURE_PIPELINE_"

#: Shared settings classes this service reads (validated at start-up too).
SHARED_SETTINGS_USED: SettingsClasses = (KafkaSettings, RedisSettings, TelemetrySettings)


class Settings(ServiceSettings):
    """How features are computed from ``transactions`` and ``labels`` (issue #3)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    feature_set: str = Field(
        default_factory=default_feature_set,
        min_length=1,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description=(
            "Name of the feature set to compute; written into every feature vector and "
            "used in Redis keys, so it must be a plain identifier."
        ),
    )
    consumer_group: str = consumer_group_field(
        "rtml-feature-pipeline",
        "Kafka consumer group. One worker per group owns every partition: terminal "
        "windows need all of a terminal's transactions, which are keyed by customer.",
    )
    redis_ttl_s: int = Field(
        default=38 * 24 * 3600,
        ge=60,
        description=(
            "TTL of a customer's / terminal's feature hash and prefix logs in Redis, renewed "
            "by each write. Longer than the longest horizon (30-day window + 7-day label "
            "delay) plus the allowed lateness, so keys expire only once no request window "
            "can reach their events."
        ),
    )
    online_layout: Literal["prefix", "prefix+latest", "latest"] = Field(
        default="prefix",
        description=(
            "What the pipeline writes to Redis per touched entity: 'prefix' its prefix logs "
            "(three sorted sets per entity, rtml_features.online_store.redis.prefix_layout: "
            "what the decision API computes a request's vector from at the request's own "
            "time), 'latest' its hash of feature values at its newest event (what decision "
            "APIs before request-time features read; the Flink engine writes only these), "
            "'prefix+latest' both (while such a reader remains)."
        ),
    )
    allowed_lateness_s: int = Field(
        default=300,
        ge=0,
        description=(
            "How far behind the newest event time seen an event may arrive and still "
            "update windows; later events are counted as late instead."
        ),
    )
    checkpoint_interval_s: float = Field(
        default=300.0,
        gt=0,
        description=(
            "How often the window state is checkpointed to Redis with the offsets it covers. "
            "A crash replays at most this much input; each checkpoint pauses processing "
            "(~1 s for 30 days of the default data), so rarer checkpoints keep p99 low."
        ),
    )
    gc_freeze_interval_s: float = Field(
        default=1.0,
        ge=0,
        description=(
            "How often young garbage is collected and the survivors frozen out of Python's "
            "cyclic collector (gc.freeze); CPython's automatic collections are off in "
            "between. The window state only grows: full collections walking it stopped the "
            "worker for up to 166 ms (the freshness p99 tail), and automatic young "
            "collections cost ~6 % of its CPU. Each collection pauses ~5 ms at 2,000 tx/s, "
            "~50 ms at 20,000. 0 keeps CPython's default behaviour."
        ),
    )
    max_partition_lead_s: float = Field(
        default=432_000.0,
        gt=0,
        description=(
            "While catching up, an input partition more than this far ahead (event time) of "
            "the slowest one is paused until the others catch up. The client hands over a "
            "backlog in long single-partition runs; a partition weeks ahead kept all its "
            "vectors revisable and, one run in four, caused a revision storm (2.5x slower). "
            "While a transactions partition has delivered nothing yet, the others are held "
            "within this lead of the lowest event time seen (one silent through 1 s of idle "
            "polls counts as empty). Keep it below the shortest label delay (7 days in the "
            "baseline)."
        ),
    )
    max_event_ahead_s: float = Field(
        default=86_400.0,
        ge=0,
        description=(
            "An event more than this far ahead of its partition's event time, carried "
            "forward at wall-clock speed since it last advanced, is quarantined (dead-lettered "
            "to <topic>.dlq with the reason; it touches no window, watermark or Redis hash). "
            "Must exceed the longest gap between consecutive events of one partition in a "
            "replay faster than real time (a day: a night without payments). A replay that "
            "skips ahead in event time by more (e.g. days 0-6, then days 30-36) needs it "
            "raised. 0 disables this bound."
        ),
    )
    max_clock_skew_s: float = Field(
        default=600.0,
        ge=0,
        description=(
            "An event (a transaction's event_time, a label's labeled_at) more than this far "
            "ahead of the wall clock is quarantined, whatever its partition; a label whose "
            "transaction_time is this much after its labeled_at too. 0 disables both."
        ),
    )
    max_partition_skew_s: int = Field(
        default=365 * 86_400,
        ge=0,
        description=(
            "A partition's first event (no event time of its own yet) more than this far "
            "from the stream's event time (the most advanced partition's, carried forward at "
            "wall-clock speed), either way, is quarantined: a far-past first event would "
            "drag the watermark back and anchor its partition so low that its next events "
            "look ahead. Partitions lead each other by weeks while a backlog is read. "
            "0 disables."
        ),
    )
    max_event_age_s: int = Field(
        default=30 * 365 * 86_400,
        ge=0,
        description=(
            "The stream's very first event (nothing to compare with) is quarantined if it is "
            "older than this before the wall clock (30 years: replays of 2018 data pass). "
            "0 disables."
        ),
    )
    fetch_partition_bytes: int = Field(
        default=262_144,
        ge=1024,
        description=(
            "Max bytes fetched per partition per request. Smaller fetches interleave "
            "partitions more finely in event time, so fewer vectors need revising."
        ),
    )
    engine: Literal["kafka", "faust"] = Field(
        default="kafka",
        description=(
            "Streaming engine: 'kafka' (confluent-kafka consumer loop, the fastest) or "
            "'faust' (a faust-streaming app). Both run the same worker and checkpoints."
        ),
    )
    exit_when_idle_s: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Stop (checkpointed, exit 0) after this many seconds without input once "
            "partitions are assigned; 0 runs until SIGTERM. For catch-up jobs and tests."
        ),
    )
