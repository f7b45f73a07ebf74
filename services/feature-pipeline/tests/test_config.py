"""rtml_feature_pipeline settings: its defaults, an override and its own validation.

The contract every service keeps (README, entry point, shared settings) is
checked for all of them in ``tests/test_service_configs.py``.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rtml_feature_pipeline.config import Settings

# services/conftest.py: RTML_* variables of the shell must not change the defaults.
pytestmark = pytest.mark.usefixtures("clean_environment")

#: Defaults the README promises; changing one is a behaviour change.
EXPECTED_DEFAULTS = {
    "feature_set": "baseline",
    "consumer_group": "rtml-feature-pipeline",
    "redis_ttl_s": 3283200,
    "checkpoint_interval_s": 300.0,
    "gc_freeze_interval_s": 1.0,
    "fetch_partition_bytes": 262144,
    "allowed_lateness_s": 300,
    "max_event_ahead_s": 86400.0,
    "max_clock_skew_s": 600.0,
    "max_partition_skew_s": 31536000,
    "max_event_age_s": 946080000,
}


def test_defaults_parse_to_the_documented_values() -> None:
    assert Settings().model_dump(include=set(EXPECTED_DEFAULTS)) == EXPECTED_DEFAULTS


def test_environment_overrides_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = 60
    assert EXPECTED_DEFAULTS["allowed_lateness_s"] != expected, "the override must change something"
    monkeypatch.setenv("RTML_FEATURE_PIPELINE_ALLOWED_LATENESS_S", "60")
    assert Settings().allowed_lateness_s == expected


@pytest.mark.parametrize("name", ["Base Line", "v1:x", "-leading-dash"])
def test_feature_set_must_be_a_plain_identifier(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """It becomes part of Redis keys, where spaces and colons would collide."""
    monkeypatch.setenv("RTML_FEATURE_PIPELINE_FEATURE_SET", name)
    with pytest.raises(ValidationError, match="feature_set"):
        Settings()


def test_empty_value_means_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose's ``${VAR:-}`` yields an empty string, which must not name a feature set."""
    monkeypatch.setenv("RTML_FEATURE_PIPELINE_FEATURE_SET", "")
    assert Settings().feature_set == EXPECTED_DEFAULTS["feature_set"]


@pytest.mark.parametrize("name", ["MAX_EVENT_AHEAD_S", "MAX_CLOCK_SKEW_S",
                                  "MAX_PARTITION_SKEW_S", "MAX_EVENT_AGE_S"])
def test_event_time_bounds_refuse_negative_values(monkeypatch: pytest.MonkeyPatch,
                                                  name: str) -> None:
    monkeypatch.setenv(f"RTML_FEATURE_PIPELINE_{name}", "-1")
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()
