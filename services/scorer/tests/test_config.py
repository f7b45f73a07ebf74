"""rtml_scorer settings: its defaults and an environment override.

The contract every service keeps (README, entry point, shared settings) is
checked for all of them in ``tests/test_service_configs.py``.
"""

from __future__ import annotations

import pytest

from rtml_scorer.config import Settings

# services/conftest.py: RTML_* variables of the shell must not change the defaults.
pytestmark = pytest.mark.usefixtures("clean_environment")

#: Defaults the README promises; changing one is a behaviour change.
EXPECTED_DEFAULTS = {
    "model_name": "fraud-detector",
    "consumer_group": "rtml-scorer",
    "shadow_sample_percent": 100.0,
    "shadow_failure_limit": 5,
}


def test_defaults_parse_to_the_documented_values() -> None:
    assert Settings().model_dump(include=set(EXPECTED_DEFAULTS)) == EXPECTED_DEFAULTS


def test_environment_overrides_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = 12.5
    assert EXPECTED_DEFAULTS["shadow_sample_percent"] != expected, (
        "the override must change something"
    )
    monkeypatch.setenv("RTML_SCORER_SHADOW_SAMPLE_PERCENT", "12.5")
    assert Settings().shadow_sample_percent == expected
