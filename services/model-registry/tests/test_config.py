"""rtml_model_registry settings: defaults, environment overrides, validation, and the entry point.

The entry point is run in a subprocess because its contract is the process
exit code and stderr that an orchestrator sees.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from enum import Enum
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from rtml_common.config import SHARED_SETTINGS, env_names
from rtml_common.topics import all_topic_names
from rtml_model_registry import ISSUE
from rtml_model_registry.__main__ import EXIT_BAD_CONFIG, EXIT_NOT_IMPLEMENTED, unknown_variables
from rtml_model_registry.config import ENV_PREFIX, SHARED_SETTINGS_USED, Settings

README = Path(__file__).resolve().parents[1] / "README.md"

#: Defaults the README promises; changing one is a behaviour change.
EXPECTED_DEFAULTS = {
    "http_host": "127.0.0.1",
    "http_port": 8000,
    "api_key": None,
    "latency_budget_ms": 20.0,
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop RTML_* variables of the developer's shell so defaults are really defaults."""
    for name in list(os.environ):
        if name.upper().startswith("RTML_"):
            monkeypatch.delenv(name)


def run_service(**env: str) -> subprocess.CompletedProcess[str]:
    """``python -m rtml_model_registry`` with only ``env`` as RTML_* configuration."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("RTML_")}
    return subprocess.run(
        [sys.executable, "-m", "rtml_model_registry"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rendered_default(field: FieldInfo) -> str:
    """A default as the README's configuration table writes it."""
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def test_defaults_parse_to_the_documented_values() -> None:
    settings = Settings()
    assert {name: getattr(settings, name) for name in EXPECTED_DEFAULTS} == EXPECTED_DEFAULTS


def test_environment_overrides_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = 9000
    assert EXPECTED_DEFAULTS["http_port"] != expected, "the override must change something"
    monkeypatch.setenv("RTML_MODEL_REGISTRY_HTTP_PORT", "9000")
    assert Settings().http_port == expected


def test_invalid_value_raises_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_MODEL_REGISTRY_HTTP_PORT", "70000")
    with pytest.raises(ValidationError, match="http_port"):
        Settings()


def test_settings_do_not_duplicate_shared_settings() -> None:
    assert set(SHARED_SETTINGS_USED) <= set(SHARED_SETTINGS)
    own = env_names(Settings)
    assert all(name.startswith(ENV_PREFIX) for name in own)
    for shared in SHARED_SETTINGS:
        assert not own & env_names(shared), shared.__name__


def test_unknown_prefixed_variable_is_flagged() -> None:
    typo = "RTML_MODEL_REGISTRY_HTTP_PORT"[:-1]
    assert unknown_variables({typo: "x", "RTML_MODEL_REGISTRY_HTTP_PORT": "y", "PATH": "/bin"}) == [
        typo
    ]


def test_readme_documents_every_setting_with_its_default() -> None:
    text = README.read_text()
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"
        env = f"{ENV_PREFIX}{name.upper()}"
        rows = [line for line in text.splitlines() if line.startswith(f"| `{env}` |")]
        assert rows, f"README does not document {env}"
        assert f"`{rendered_default(field)}`" in rows[0], f"README default of {env} is stale"
    for shared in SHARED_SETTINGS_USED:
        prefix = str(shared.model_config.get("env_prefix"))
        assert f"`{prefix}*`" in text, f"README does not mention {prefix}*"
    assert f"Status: not implemented yet (issue #{ISSUE})" in text


def test_readme_topics_are_platform_topics() -> None:
    section = README.read_text().split("## Topics", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    topic_cells = [cells[1] for cells in rows[1:]]  # column 2 of the table, header row skipped
    named = {name for cell in topic_cells for name in re.findall(r"`([^`]+)`", cell)}
    assert named, "README names no topics"
    assert named <= set(all_topic_names())


def test_entry_point_rejects_a_bad_value_with_exit_2() -> None:
    result = run_service(RTML_MODEL_REGISTRY_HTTP_PORT="70000")
    assert result.returncode == EXIT_BAD_CONFIG, result.stderr
    assert "RTML_MODEL_REGISTRY_HTTP_PORT" in result.stderr
    assert "http_port" in result.stderr


def test_entry_point_rejects_a_bad_shared_value_with_exit_2() -> None:
    result = run_service(RTML_KAFKA_SESSION_TIMEOUT_MS="5")
    assert result.returncode == EXIT_BAD_CONFIG, result.stderr
    assert "RTML_KAFKA_SESSION_TIMEOUT_MS" in result.stderr


def test_entry_point_rejects_a_misspelt_variable_with_exit_2() -> None:
    typo = "RTML_MODEL_REGISTRY_HTTP_PORT"[:-1]
    result = run_service(**{typo: "9000"})
    assert result.returncode == EXIT_BAD_CONFIG, result.stderr
    assert typo in result.stderr


def test_entry_point_says_it_is_not_implemented_and_exits_78() -> None:
    result = run_service(RTML_MODEL_REGISTRY_HTTP_PORT="9000")
    assert result.returncode == EXIT_NOT_IMPLEMENTED, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "not implemented" in lines[0]
    assert f"issue #{ISSUE}" in lines[0]


def test_short_api_key_is_refused_without_echoing_it() -> None:
    result = run_service(RTML_MODEL_REGISTRY_API_KEY="hunter2-secret")
    assert result.returncode == EXIT_BAD_CONFIG, result.stderr
    assert "RTML_MODEL_REGISTRY_API_KEY" in result.stderr
    assert "hunter2-secret" not in result.stderr


def test_api_key_is_kept_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_MODEL_REGISTRY_API_KEY", "k" * 32)
    settings = Settings()
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "k" * 32
    assert "k" * 32 not in repr(settings)
