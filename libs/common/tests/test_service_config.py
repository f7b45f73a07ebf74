"""The shared start-up configuration check of the service entry points."""

from __future__ import annotations

import doctest
import os

import pytest
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from rtml_common import service_config
from rtml_common.config import KafkaSettings, TelemetrySettings
from rtml_common.service_config import (
    EXIT_BAD_CONFIG,
    EXIT_NOT_IMPLEMENTED,
    ConfigError,
    describe,
    exit_not_implemented,
    load_settings,
    unknown_variables,
)

PREFIX = "RTML_DEMO_"
SHARED: tuple[type[BaseSettings], ...] = (KafkaSettings, TelemetrySettings)
SECRET = "hunter2-secret"


class DemoSettings(BaseSettings):
    """A service's own settings, configured like the real ones."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, extra="forbid", frozen=True, env_ignore_empty=True
    )

    size: int = Field(default=3, ge=1)
    ratio: float = Field(default=0.5, ge=0, le=1)
    weights: dict[str, float] = Field(default_factory=dict)
    api_key: SecretStr | None = None

    @field_validator("api_key")
    @classmethod
    def _long_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return key


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop RTML_* variables of the developer's shell so defaults are really defaults."""
    for name in [name for name in os.environ if name.upper().startswith("RTML_")]:
        monkeypatch.delenv(name)


def validation_error(**env: str) -> ValidationError | SettingsError:
    """What DemoSettings raises for ``env`` (set in the process environment)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with pytest.raises((ValidationError, SettingsError)) as raised:
            DemoSettings()
    error = raised.value
    assert isinstance(error, ValidationError | SettingsError)
    return error


def run(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stderr of the not-implemented entry point for the demo service."""
    code = exit_not_implemented("rtml-demo", 42, DemoSettings, SHARED, PREFIX)
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err


def test_exit_codes_are_the_documented_ones() -> None:
    assert (EXIT_BAD_CONFIG, EXIT_NOT_IMPLEMENTED) == (2, 78)


def test_docstring_examples() -> None:
    result = doctest.testmod(service_config)
    assert result.attempted > 0
    assert result.failed == 0


def test_unknown_variables_are_prefixed_names_no_setting_reads() -> None:
    environ = {
        "RTML_DEMO_SIZ": "1",
        "RTML_DEMO_SIZE": "1",
        "rtml_demo_ratio": "0.1",  # known, in another case: pydantic-settings reads it
        "rtml_demo_other": "x",
        "RTML_DEMOS_X": "1",  # another prefix
        "RTML_KAFKA_BOOTSTRAP_SERVERS": "b:9092",
        "PATH": "/bin",
    }
    assert unknown_variables(environ, PREFIX, DemoSettings) == ["RTML_DEMO_SIZ", "rtml_demo_other"]
    assert unknown_variables({}, PREFIX, DemoSettings) == []


def test_describe_names_variable_and_field_but_not_the_value() -> None:
    error = validation_error(RTML_DEMO_SIZE="0", RTML_DEMO_API_KEY=SECRET)
    text = describe(error, (DemoSettings, *SHARED))
    problems = text.split("; ")
    assert len(problems) == 2
    assert problems[0].startswith("RTML_DEMO_SIZE (size): ")
    assert problems[1].startswith("RTML_DEMO_API_KEY (api_key): ")
    assert "16 characters" in problems[1]
    assert SECRET not in text
    assert "\n" not in text


def test_describe_takes_the_prefix_from_the_class_that_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RTML_KAFKA_SESSION_TIMEOUT_MS", "5")
    with pytest.raises(ValidationError) as raised:
        KafkaSettings()
    text = describe(raised.value, (DemoSettings, *SHARED))
    assert text.startswith("RTML_KAFKA_SESSION_TIMEOUT_MS (session_timeout_ms): ")
    # Without the class among the candidates, only the field name is known.
    assert describe(raised.value, (DemoSettings,)).startswith("SESSION_TIMEOUT_MS ")


def test_describe_explains_a_settings_error_by_its_cause() -> None:
    error = validation_error(RTML_DEMO_WEIGHTS="a=1")
    assert isinstance(error, SettingsError)
    assert error.__cause__ is not None
    text = describe(error, (DemoSettings,))
    assert "weights" in text
    assert str(error.__cause__) in text
    assert describe(SettingsError("no cause"), (DemoSettings,)) == "no cause"


def test_load_settings_returns_own_and_shared_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_DEMO_SIZE", "7")
    monkeypatch.setenv("RTML_KAFKA_BATCH_SIZE", "9")
    settings, shared = load_settings(DemoSettings, SHARED, PREFIX)
    assert isinstance(settings, DemoSettings)
    assert settings.size == 7
    assert [type(item) for item in shared] == list(SHARED)
    assert isinstance(shared[0], KafkaSettings)
    assert shared[0].batch_size == 9


def test_load_settings_refuses_an_unknown_variable_listing_the_known_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RTML_DEMO_SIZ", "7")
    with pytest.raises(ConfigError) as raised:
        load_settings(DemoSettings, SHARED, PREFIX)
    assert str(raised.value) == (
        "unknown variable(s) RTML_DEMO_SIZ; "
        "known: RTML_DEMO_API_KEY, RTML_DEMO_RATIO, RTML_DEMO_SIZE, RTML_DEMO_WEIGHTS"
    )


def test_load_settings_checks_the_given_environ_for_unknown_variables() -> None:
    with pytest.raises(ConfigError, match="RTML_DEMO_TYPO"):
        load_settings(DemoSettings, SHARED, PREFIX, environ={"RTML_DEMO_TYPO": "1"})


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("RTML_DEMO_RATIO", "1.5", "RTML_DEMO_RATIO (ratio)"),
        ("RTML_DEMO_API_KEY", SECRET, "RTML_DEMO_API_KEY (api_key)"),
        ("RTML_DEMO_WEIGHTS", "{not json", "weights"),
        ("RTML_TELEMETRY_METRICS_PORT", "70000", "RTML_TELEMETRY_METRICS_PORT (metrics_port)"),
    ],
)
def test_load_settings_refuses_an_invalid_value_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load_settings(DemoSettings, SHARED, PREFIX)
    assert named in str(raised.value)
    assert value not in str(raised.value)
    assert isinstance(raised.value.__cause__, ValidationError | SettingsError)


def test_empty_values_fall_back_to_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_DEMO_SIZE", "")
    settings, _ = load_settings(DemoSettings, SHARED, PREFIX)
    assert settings.size == 3


def test_valid_configuration_exits_78_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RTML_DEMO_SIZE", "7")
    code, err = run(capsys)
    assert code == EXIT_NOT_IMPLEMENTED
    assert err == (
        "rtml-demo: configuration is valid, but the service is not implemented yet "
        "(issue #42); exiting with code 78\n"
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RTML_DEMO_SIZ", "7", "unknown variable(s) RTML_DEMO_SIZ; known: "),
        ("RTML_DEMO_SIZE", "0", "RTML_DEMO_SIZE (size): "),
        ("RTML_DEMO_API_KEY", SECRET, "RTML_DEMO_API_KEY (api_key): "),
        (
            "RTML_KAFKA_SESSION_TIMEOUT_MS",
            "5",
            "RTML_KAFKA_SESSION_TIMEOUT_MS (session_timeout_ms): ",
        ),
    ],
)
def test_invalid_configuration_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(variable, value)
    code, err = run(capsys)
    assert code == EXIT_BAD_CONFIG
    assert err.startswith(f"rtml-demo: invalid configuration: {message}")
    assert err.count("\n") == 1
    assert SECRET not in err
