"""rtml_model_registry settings: its defaults, an override and its API key rules.

The contract every service keeps (README, entry point, shared settings) is
checked for all of them in ``tests/test_service_configs.py``, where the entry
point runs in a subprocess; here :func:`main` is called directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rtml_common.service_config import EXIT_BAD_CONFIG
from rtml_model_registry.__main__ import main
from rtml_model_registry.config import Settings

# services/conftest.py: RTML_* variables of the shell must not change the defaults.
pytestmark = pytest.mark.usefixtures("clean_environment")

#: Defaults the README promises; changing one is a behaviour change.
EXPECTED_DEFAULTS = {
    "http_host": "127.0.0.1",
    "http_port": 8000,
    "api_key": None,
    "latency_budget_ms": 20.0,
    "latency_samples": 500,
    "feature_set": "baseline",
    "audit_db": Path(".rtml/model-registry/audit.sqlite"),
    "gate_timeout_s": 120.0,
    "champion_metric": "ap",
    "max_metric_drop": 0.01,
    "aliases": ["champion", "challenger", "shadow"],
    "alias_prefixes": ["shadow-"],
    "event_timeout_s": 10.0,
    "republish_interval_s": 30.0,
}


def test_defaults_parse_to_the_documented_values() -> None:
    assert Settings().model_dump(include=set(EXPECTED_DEFAULTS)) == EXPECTED_DEFAULTS


def test_environment_overrides_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = 9000
    assert EXPECTED_DEFAULTS["http_port"] != expected, "the override must change something"
    monkeypatch.setenv("RTML_MODEL_REGISTRY_HTTP_PORT", "9000")
    assert Settings().http_port == expected


def test_short_api_key_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RTML_MODEL_REGISTRY_API_KEY", "hunter2-secret")
    assert main() == EXIT_BAD_CONFIG
    captured = capsys.readouterr()
    assert "RTML_MODEL_REGISTRY_API_KEY" in captured.err
    assert "hunter2-secret" not in captured.err + captured.out


def test_api_key_is_kept_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_MODEL_REGISTRY_API_KEY", "k" * 32)
    settings = Settings()
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "k" * 32
    assert "k" * 32 not in repr(settings)


@pytest.mark.parametrize(("alias", "allowed"), [
    ("champion", True), ("challenger", True), ("shadow", True), ("shadow-river", True),
    ("shadow-", False), ("Champion", False), ("latest", False), ("shadow-a_b", False),
    ("champion-2", False),
])
def test_alias_names(alias: str, allowed: bool) -> None:
    problem = Settings().alias_problem(alias)
    assert (problem is None) == allowed
    if not allowed:
        assert problem is not None
        assert "allowed: champion, challenger, shadow, shadow-<suffix>" in problem


@pytest.mark.parametrize(("variable", "value", "words"), [
    ("RTML_MODEL_REGISTRY_ALIASES", '["challenger"]', "must include 'champion'"),
    ("RTML_MODEL_REGISTRY_ALIAS_PREFIXES", '["shadow"]', "ending with '-'"),
    ("RTML_MODEL_REGISTRY_FEATURE_SET", "nope", "unknown feature set 'nope'"),
])
def test_alias_and_feature_set_settings_are_checked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str,
    value: str, words: str,
) -> None:
    monkeypatch.setenv(variable, value)
    assert main() == EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert variable in err
    assert words in err
