"""The configuration contract every service keeps, checked once per service.

Each service under ``services/`` documents its settings in its README, reads
only its own ``RTML_<SERVICE>_*`` variables plus shared classes from
:mod:`rtml_common.config`, and has an entry point that fails on a bad or
misspelt variable with exit code 2 before it connects to anything. What is
particular to one service (its defaults, its own validators) is tested in
that service's ``tests/test_config.py``.

The entry point is run in a subprocess because its contract is the process
exit code and stderr that an orchestrator sees.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from rtml_common.config import SHARED_SETTINGS, env_names
from rtml_common.service_config import EXIT_BAD_CONFIG, unknown_variables
from rtml_common.topics import all_topic_names

SERVICES_DIR = Path(__file__).resolve().parents[1] / "services"


@dataclass(frozen=True)
class Service:
    """One service skeleton and the values its contract is exercised with."""

    #: Directory under ``services/``.
    name: str
    #: Own field set to ``bad_value``, which must fail validation.
    bad_field: str
    bad_value: str
    #: Own field set to ``good_value``, a valid value; its name is also misspelt.
    good_field: str
    good_value: str

    @property
    def package(self) -> str:
        return "rtml_" + self.name.replace("-", "_")

    @property
    def package_module(self) -> ModuleType:
        return importlib.import_module(self.package)

    @property
    def config(self) -> ModuleType:
        return importlib.import_module(f"{self.package}.config")

    @property
    def readme(self) -> Path:
        return SERVICES_DIR / self.name / "README.md"

    def env(self, field: str) -> str:
        """The variable that sets one of the service's own fields."""
        assert field in self.config.Settings.model_fields, f"{self.name} has no field {field}"
        return f"{self.config.ENV_PREFIX}{field.upper()}"


SERVICES = [
    Service("feature-pipeline", "redis_ttl_s", "10", "allowed_lateness_s", "60"),
    Service("model-registry", "http_port", "70000", "http_port", "9000"),
    Service("scorer", "shadow_sample_percent", "150", "shadow_sample_percent", "12.5"),
    Service(
        "decision",
        "request_timeout_ms",
        "0",
        "canary_weights",
        '{"champion": 95, "challenger": 5}'),
    Service("shadow-auditor", "ap_margin", "1.5", "auto_promote", "true"),
    Service("drift-monitor", "psi_threshold", "0", "retrain_policy", "never"),
    Service("retrain-worker", "train_days", "0", "registry_url", "http://registry:8000"),
    Service("consistency-monitor", "sample_rate", "2", "tolerance", "1e-6"),
]

each_service = pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop RTML_* variables of the developer's shell so defaults are really defaults."""
    for name in list(os.environ):
        if name.upper().startswith("RTML_"):
            monkeypatch.delenv(name)


def run_service(service: Service, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m rtml_<service>`` with only ``env`` as RTML_* configuration."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("RTML_")}
    return subprocess.run(
        [sys.executable, "-m", service.package],
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


def test_every_service_is_checked() -> None:
    """A new service directory cannot slip past the contract."""
    on_disk = {path.parents[1].name for path in SERVICES_DIR.glob("*/rtml_*/__main__.py")}
    assert on_disk == {service.name for service in SERVICES}


@each_service
def test_invalid_value_raises_naming_the_field(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(service.env(service.bad_field), service.bad_value)
    with pytest.raises(ValidationError, match=service.bad_field):
        service.config.Settings()


@each_service
def test_settings_do_not_duplicate_shared_settings(service: Service) -> None:
    config = service.config
    assert set(config.SHARED_SETTINGS_USED) <= set(SHARED_SETTINGS)
    own = env_names(config.Settings)
    assert all(name.startswith(config.ENV_PREFIX) for name in own)
    for shared in SHARED_SETTINGS:
        assert not own & env_names(shared), shared.__name__


@each_service
def test_unknown_prefixed_variable_is_flagged(service: Service) -> None:
    config = service.config
    variable = service.env(service.good_field)
    typo = variable[:-1]
    environ = {typo: "x", variable: "y", "PATH": "/bin"}
    assert unknown_variables(environ, config.ENV_PREFIX, config.Settings) == [typo]


@each_service
def test_readme_documents_every_setting_with_its_default(service: Service) -> None:
    config = service.config
    text = service.readme.read_text()
    for name, field in config.Settings.model_fields.items():
        assert field.description, f"{name} has no description"
        env = f"{config.ENV_PREFIX}{name.upper()}"
        rows = [line for line in text.splitlines() if line.startswith(f"| `{env}` |")]
        assert rows, f"README does not document {env}"
        assert f"`{rendered_default(field)}`" in rows[0], f"README default of {env} is stale"
    for shared in config.SHARED_SETTINGS_USED:
        prefix = str(shared.model_config.get("env_prefix"))
        assert f"`{prefix}*`" in text, f"README does not mention {prefix}*"
    assert "not implemented yet" not in text, "README status line is stale"


@each_service
def test_readme_topics_are_platform_topics(service: Service) -> None:
    section = service.readme.read_text().split("## Topics", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    topic_cells = [cells[1] for cells in rows[1:]]  # column 2 of the table, header row skipped
    named = {name for cell in topic_cells for name in re.findall(r"`([^`]+)`", cell)}
    assert named, "README names no topics"
    assert named <= set(all_topic_names())


@each_service
def test_entry_point_rejects_a_bad_value_with_exit_2(service: Service) -> None:
    variable = service.env(service.bad_field)
    result = run_service(service, **{variable: service.bad_value})
    assert result.returncode == EXIT_BAD_CONFIG, result.stderr
    assert variable in result.stderr
    assert service.bad_field in result.stderr


@each_service
def test_entry_point_rejects_a_bad_shared_value_with_exit_2(service: Service) -> None:
    result = run_service(service, RTML_KAFKA_SESSION_TIMEOUT_MS="5")
    assert result.returncode == EXIT_BAD_CONFIG, result.stderr
    assert "RTML_KAFKA_SESSION_TIMEOUT_MS" in result.stderr


@each_service
def test_entry_point_rejects_a_misspelt_variable_with_exit_2(service: Service) -> None:
    typo = service.env(service.good_field)[:-1]
    result = run_service(service, **{typo: service.good_value})
    assert result.returncode == EXIT_BAD_CONFIG, result.stderr
    assert typo in result.stderr
