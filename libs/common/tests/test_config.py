"""Settings read their documented environment variables."""

import pytest
from pydantic import ValidationError

from rtml_common.config import SHARED_SETTINGS, KafkaSettings, TelemetrySettings, env_names


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_KAFKA_BOOTSTRAP_SERVERS", "broker:29092")
    monkeypatch.setenv("RTML_KAFKA_EXTRA", '{"security.protocol": "SASL_SSL"}')
    settings = KafkaSettings()
    assert settings.bootstrap_servers == "broker:29092"
    assert settings.extra == {"security.protocol": "SASL_SSL"}


def test_invalid_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_TELEMETRY_METRICS_PORT", "70000")
    with pytest.raises(ValidationError, match="metrics_port"):
        TelemetrySettings()


def test_env_names_are_prefixed_and_unique() -> None:
    seen: set[str] = set()
    for settings_type in SHARED_SETTINGS:
        names = env_names(settings_type)
        assert all(name.startswith("RTML_") for name in names)
        assert not names & seen
        seen |= names
    assert "RTML_KAFKA_BOOTSTRAP_SERVERS" in seen
