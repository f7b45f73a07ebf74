"""Configuration from environment variables, with documented defaults.

Each concern has one settings class with its own prefix, read independently,
so a service composes exactly the ones it needs and a docker-compose file can
be checked against the variable names (:func:`env_names`). Defaults point at
the local stack (``rtml stack up``) on 127.0.0.1 with standard ports.

>>> KafkaSettings(bootstrap_servers="127.0.0.1:19092").bootstrap_servers
'127.0.0.1:19092'
>>> sorted(env_names(RedisSettings))[:2]
['RTML_REDIS_SOCKET_TIMEOUT_S', 'RTML_REDIS_URL']
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """Kafka connection and consumer-loop behaviour (prefix ``RTML_KAFKA_``)."""

    model_config = SettingsConfigDict(env_prefix="RTML_KAFKA_", extra="ignore")

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Comma-separated host:port list."
    )
    client_id: str = Field(default="rtml", description="Client id prefix seen by the broker.")
    session_timeout_ms: int = Field(
        default=10_000, ge=1_000, description="Consumer-group session timeout."
    )
    batch_size: int = Field(default=1000, ge=1, description="Max records handled per batch.")
    poll_timeout_s: float = Field(
        default=0.02,
        gt=0,
        description=(
            "Max wait for a batch to fill. librdkafka waits this long whenever fewer than "
            "batch_size records are ready, so it bounds the latency added at low rates."
        ),
    )
    max_retries: int = Field(
        default=3, ge=0,
        description="Retries of a failing batch before dead-lettering (a dependency's outage "
                    "is not counted: it is waited out, see dependency_backoff_max_s).",
    )
    retry_backoff_s: float = Field(default=0.2, ge=0, description="First retry delay; doubles.")
    dependency_backoff_max_s: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Longest wait between attempts while a dependency (Redis, a database) is "
            "unavailable. Such a failure is retried without a bound (from retry_backoff_s, "
            "doubling up to this), never dead-lettered; the batch's offsets wait with it."
        ),
    )
    commit_interval_s: float = Field(
        default=1.0,
        ge=0,
        description=(
            "Flush produced records and commit consumed offsets at most this often "
            "(0 = after every batch). A crash replays at most this much input."
        ),
    )
    idempotent_producer: bool = Field(
        default=True,
        description=(
            "Producer idempotence (no duplicates from client retries). The local Tansu "
            "broker answers idempotent produce requests with a ~0.5 s tail (p99); "
            "consumers dedupe anyway, so turning it off there only trades that latency."
        ),
    )
    flush_timeout_s: float = Field(
        default=30.0, gt=0, description="Max wait for producer deliveries before failing."
    )
    max_message_bytes: int = Field(
        default=1_000_000,
        ge=16_384,
        description=(
            "Largest record (key + value + headers + librdkafka's 36-byte framing) the "
            "producers write: librdkafka's message.max.bytes, which a default producer "
            "shares. Dead letters are cut to fit it (size and SHA-256 of the original in "
            "headers); consumers fetch whole records of this size; topics are created with "
            "max.message.bytes to match. At least 16 KiB: a minimal dead letter must fit."
        ),
    )
    extra: dict[str, str] = Field(
        default_factory=dict,
        description="Extra librdkafka properties as JSON, e.g. SASL settings.",
    )


class RedisSettings(BaseSettings):
    """Online feature store connection (prefix ``RTML_REDIS_``)."""

    model_config = SettingsConfigDict(env_prefix="RTML_REDIS_", extra="ignore")

    url: str = Field(default="redis://127.0.0.1:6379/0",
                     description="redis:// URL of one server, or redis+cluster://host:port,"
                                 "host:port,... for a Redis Cluster (docs/online-store.md).")
    socket_timeout_s: float = Field(default=1.0, gt=0, description="Per-command timeout.")


class MlflowSettings(BaseSettings):
    """Model registry backend (prefix ``RTML_MLFLOW_``)."""

    model_config = SettingsConfigDict(env_prefix="RTML_MLFLOW_", extra="ignore")

    tracking_uri: str = Field(default="http://127.0.0.1:5000", description="MLflow server URL.")


class CassandraSettings(BaseSettings):
    """Prediction / decision log (prefix ``RTML_CASSANDRA_``)."""

    model_config = SettingsConfigDict(env_prefix="RTML_CASSANDRA_", extra="ignore")

    contact_points: str = Field(default="127.0.0.1", description="Comma-separated hosts.")
    port: int = Field(default=9042, ge=1, le=65535)
    keyspace: str = Field(default="rtml")
    protocol_version: int = Field(
        default=1,
        ge=1,
        le=5,
        description="CQL protocol; 1 for the local Cassandra 1.2 stand-in, 4+ for Cassandra 5.",
    )


class TelemetrySettings(BaseSettings):
    """Metrics, traces and logs (prefix ``RTML_TELEMETRY_``)."""

    model_config = SettingsConfigDict(env_prefix="RTML_TELEMETRY_", extra="ignore")

    metrics_host: str = Field(default="127.0.0.1", description="Prometheus endpoint bind host.")
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Prometheus endpoint port; 0 disables it."
    )
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP base URL for traces, e.g. http://collector:4318."
    )
    log_level: str = Field(default="INFO")
    log_json: bool = Field(default=True, description="Structured JSON logs with trace ids.")


class ContractSettings(BaseSettings):
    """Limits of the event contracts themselves (prefix ``RTML_CONTRACT_``).

    Read once, when :mod:`rtml_common.events` is imported: the limits are part of
    the models (and of the exported JSON Schemas), so every producer and
    consumer of one deployment must be given the same values.
    """

    model_config = SettingsConfigDict(env_prefix="RTML_CONTRACT_", extra="ignore")

    max_amount: float = Field(
        default=1e9,
        gt=0,
        le=1e15,
        allow_inf_nan=False,
        description=(
            "Largest transaction amount accepted (major currency units, Transaction and "
            "FeatureVector); a larger one is refused like any invalid value (422, dead "
            "letter). 1e9 is a thousand times any card payment, yet no window sum can "
            "overflow and every feature stays far inside the float32 range models read "
            "features in (3.4e38). At most 1e15: integers are exact in a double up to there, "
            "so the bound means the same to every decoder."
        ),
    )


def env_names(settings_type: type[BaseSettings]) -> set[str]:
    """The environment variable names a settings class reads."""
    prefix = str(settings_type.model_config.get("env_prefix", ""))
    return {(prefix + name).upper() for name in settings_type.model_fields}


#: Settings classes every service may read.
SHARED_SETTINGS: tuple[type[BaseSettings], ...] = (
    KafkaSettings,
    RedisSettings,
    MlflowSettings,
    CassandraSettings,
    TelemetrySettings,
    ContractSettings,
)
