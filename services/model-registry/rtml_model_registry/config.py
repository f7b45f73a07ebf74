"""Model-registry configuration (environment variables ``RTML_MODEL_REGISTRY_*``).

Own settings only, see :class:`rtml_common.service_config.ServiceSettings`; the
shared classes it reads are listed in ``SHARED_SETTINGS_USED``.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from rtml_common.config import KafkaSettings, MlflowSettings, TelemetrySettings
from rtml_common.service_config import (
    MIN_API_KEY_LENGTH,
    ServiceSettings,
    SettingsClasses,
    check_api_key,
    http_host_field,
    http_port_field,
)
from rtml_features.baseline import default_feature_set
from rtml_models.aliases import CHALLENGER, CHAMPION, SHADOW

ENV_PREFIX = "RTML_MODEL_REGISTRY_"

#: Shared settings classes this service reads (validated at start-up too).
SHARED_SETTINGS_USED: SettingsClasses = (KafkaSettings, MlflowSettings, TelemetrySettings)


#: What an alias (or the part after a prefix) may look like: MLflow accepts more,
#: but aliases end up in URLs, metric labels and log lines.
ALIAS_SYNTAX = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
SUFFIX_SYNTAX = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


class Settings(ServiceSettings):
    """The registry HTTP API over MLflow and its promotion gate (issue #4)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    http_host: str = http_host_field()
    http_port: int = http_port_field(default=8000)
    api_key: SecretStr | None = Field(
        default=None,
        description=(
            f"Key (at least {MIN_API_KEY_LENGTH} characters) required by write endpoints "
            "(set, roll back or remove an alias, validate); unset makes the API read-only "
            "rather than open."
        ),
    )
    latency_budget_ms: float = Field(
        default=20.0,
        gt=0,
        description=(
            "p99 single-transaction inference latency a model version must meet before "
            "it may take any alias."
        ),
    )
    latency_samples: int = Field(
        default=500,
        ge=10,
        le=100_000,
        description=(
            "Single-row predictions timed by the gate (after a short warm-up) to measure "
            "the p99; more samples make the p99 steadier and the gate slower."
        ),
    )
    feature_set: str = Field(
        default_factory=default_feature_set,
        min_length=1,
        description=(
            "Feature set (rtml_features) whose input names and version a model must "
            "match to take an alias: scorers build rows from it."
        ),
    )
    audit_db: Path = Field(
        default=Path(".rtml/model-registry/audit.sqlite"),
        description=(
            "SQLite file of the append-only, hash-chained audit log of alias changes "
            "(created with its folder if missing). Back it up: it is the history rollback "
            "reads."
        ),
    )
    gate_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description=(
            "Time the gate's clean worker process gets to load, score and time a version; "
            "a worker that takes longer is killed and the gate refuses."
        ),
    )
    champion_metric: str = Field(
        default="ap",
        min_length=1,
        description=(
            "Run metric (logged by training, higher is better) compared with the current "
            "champion's before a version may become champion."
        ),
    )
    max_metric_drop: float = Field(
        default=0.01,
        ge=0,
        description=(
            "How much lower than the current champion's metric a new champion's may be "
            "(absolute), so retrains on fresher data are not blocked by noise."
        ),
    )
    aliases: list[str] = Field(
        default_factory=lambda: [CHAMPION, CHALLENGER, SHADOW],
        min_length=1,
        description="Alias names that may be set (exactly these; must include champion).",
    )
    alias_prefixes: list[str] = Field(
        default_factory=lambda: [f"{SHADOW}-"],
        description=(
            "Alias prefixes that may be set with a suffix of lowercase letters, digits "
            "and dashes (e.g. shadow-river for several shadows at once)."
        ),
    )
    event_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "How long an alias change waits for its model-events record to be delivered "
            "(the client retries within it) before answering 503."
        ),
    )
    republish_interval_s: float = Field(
        default=30.0,
        ge=0,
        description=(
            "How often undelivered model-events records are re-published from the audit "
            "log in the background (0 disables; they are still retried at start-up)."
        ),
    )

    @field_validator("api_key")
    @classmethod
    def _key_is_long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        """Refuse a short key instead of protecting write endpoints with it."""
        return check_api_key(key)

    @field_validator("aliases")
    @classmethod
    def _aliases_are_plain(cls, aliases: list[str]) -> list[str]:
        """Champion must be settable, and every name must be safe in URLs and labels."""
        bad = [alias for alias in aliases if not ALIAS_SYNTAX.match(alias)]
        if bad:
            raise ValueError(f"{bad} are not lowercase names of letters, digits and dashes")
        if CHAMPION not in aliases:
            raise ValueError(f"must include {CHAMPION!r}")
        return aliases

    @field_validator("alias_prefixes")
    @classmethod
    def _prefixes_are_plain(cls, prefixes: list[str]) -> list[str]:
        """A prefix must end with a dash so a suffix can't extend a fixed name."""
        bad = [p for p in prefixes if not (p.endswith("-") and ALIAS_SYNTAX.match(p[:-1]))]
        if bad:
            raise ValueError(f"{bad} must be lowercase names ending with '-'")
        return prefixes

    @field_validator("feature_set")
    @classmethod
    def _feature_set_exists(cls, name: str) -> str:
        """An unknown feature set would refuse every version; say so at start-up."""
        from rtml_features.baseline import get_feature_set

        try:
            get_feature_set(name)  # the configured feature repo's sets, and the handbook's
        except KeyError as error:
            raise ValueError(str(error)) from None
        return name

    def alias_problem(self, alias: str) -> str | None:
        """Why ``alias`` may not be set (None if it may), naming what is allowed."""
        if alias in self.aliases:
            return None
        for prefix in self.alias_prefixes:
            if alias.startswith(prefix) and SUFFIX_SYNTAX.match(alias[len(prefix):]):
                return None
        allowed = ", ".join(self.aliases + [f"{p}<suffix>" for p in self.alias_prefixes])
        return (
            f"alias {alias!r} is not allowed; allowed: {allowed} (suffix: lowercase letters, "
            "digits and dashes, at most 40)"
        )
