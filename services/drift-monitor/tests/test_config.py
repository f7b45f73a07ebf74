"""rtml_drift_monitor settings: its defaults, an override and the retrain policy.

The contract every service keeps (README, entry point, shared settings) is
checked for all of them in ``tests/test_service_configs.py``, where the entry
point runs in a subprocess; here :func:`main` is called directly.
"""

from __future__ import annotations

import pytest

from rtml_common.service_config import EXIT_BAD_CONFIG
from rtml_drift_monitor.__main__ import main
from rtml_drift_monitor.config import RetrainPolicy, Settings

# services/conftest.py: RTML_* variables of the shell must not change the defaults.
pytestmark = pytest.mark.usefixtures("clean_environment")

#: Defaults the README promises; changing one is a behaviour change.
EXPECTED_DEFAULTS = {
    "model_name": "fraud-detector",
    "consumer_group": "rtml-drift-monitor",
    "window_size": 5000,
    "psi_threshold": 0.2,
    "hysteresis_windows": 3,
    "retrain_policy": "on-alert",
    "retrain_cooldown_s": 86400,
}


def test_defaults_parse_to_the_documented_values() -> None:
    assert Settings().model_dump(include=set(EXPECTED_DEFAULTS)) == EXPECTED_DEFAULTS


def test_environment_overrides_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = RetrainPolicy.NEVER
    assert EXPECTED_DEFAULTS["retrain_policy"] != expected, "the override must change something"
    monkeypatch.setenv("RTML_DRIFT_MONITOR_RETRAIN_POLICY", "never")
    assert Settings().retrain_policy == expected


def test_unknown_retrain_policy_exits_2_listing_the_choices(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RTML_DRIFT_MONITOR_RETRAIN_POLICY", "always")
    assert main() == EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert "RTML_DRIFT_MONITOR_RETRAIN_POLICY" in err
    for policy in RetrainPolicy:
        assert policy.value in err
