"""rtml_shadow_auditor settings: its defaults and an environment override.

The contract every service keeps (README, entry point, shared settings) is
checked for all of them in ``tests/test_service_configs.py``.
"""

from __future__ import annotations

import pytest

from rtml_shadow_auditor.config import Settings

# services/conftest.py: RTML_* variables of the shell must not change the defaults.
pytestmark = pytest.mark.usefixtures("clean_environment")

#: Defaults the README promises; changing one is a behaviour change.
EXPECTED_DEFAULTS = {
    "model_name": "fraud-detector",
    "consumer_group": "rtml-shadow-auditor",
    "graduation_min_labels": 1000,
    "ap_margin": 0.01,
    "latency_sla_ms": 20.0,
    "auto_promote": False,
}


def test_defaults_parse_to_the_documented_values() -> None:
    assert Settings().model_dump(include=set(EXPECTED_DEFAULTS)) == EXPECTED_DEFAULTS


def test_environment_overrides_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = True
    assert EXPECTED_DEFAULTS["auto_promote"] != expected, "the override must change something"
    monkeypatch.setenv("RTML_SHADOW_AUDITOR_AUTO_PROMOTE", "true")
    assert Settings().auto_promote == expected
