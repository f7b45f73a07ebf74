"""rtml_consistency_monitor settings: defaults, validators, the entry point's exit code.

The contract every service keeps (README, entry point, shared settings) is
checked for all of them in ``tests/test_service_configs.py``.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rtml_common.service_config import EXIT_BAD_CONFIG
from rtml_consistency_monitor.__main__ import main
from rtml_consistency_monitor.config import Settings

# services/conftest.py: RTML_* variables of the shell must not change the defaults.
pytestmark = pytest.mark.usefixtures("clean_environment")

EXPECTED_DEFAULTS = {
    "consumer_group": "rtml-consistency-monitor",
    "feature_set": "baseline",
    "sample_rate": 0.05,
    "sample_key": "rtml-consistency-sample-v1",
    "allowed_lateness_s": 300,
    "idle_partition_s": 30.0,
    "decision_lateness_s": 3600,
    "tolerance": 1e-9,
    "max_pending": 100_000,
    "check_batch_size": 5000,
    "check_interval_s": 5.0,
    "max_diff_window_s": 600.0,
    "max_clock_skew_s": 300,
    "exit_when_idle_s": 0.0,
}


def test_defaults() -> None:
    assert Settings().model_dump() == EXPECTED_DEFAULTS


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_CONSISTENCY_MONITOR_SAMPLE_RATE", "0.25")
    monkeypatch.setenv("RTML_CONSISTENCY_MONITOR_TOLERANCE", "1e-6")
    settings = Settings()
    assert settings.sample_rate == 0.25 and settings.tolerance == 1e-6


@pytest.mark.parametrize(("field", "value", "message"), [
    ("sample_rate", 1.5, "less than or equal to 1"),
    ("sample_rate", -0.1, "greater than or equal to 0"),
    ("feature_set", "nope", "unknown feature set 'nope'"),
    ("sample_key", "k" * 65, "1 to 64 bytes"),
    ("max_pending", 0, "greater than or equal to 1"),
])
def test_invalid_values_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{field: value})


def test_entry_point_exits_2_on_a_bad_value(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RTML_CONSISTENCY_MONITOR_SAMPLE_RATE", "2")
    assert main() == EXIT_BAD_CONFIG
    assert "RTML_CONSISTENCY_MONITOR_SAMPLE_RATE" in capsys.readouterr().err
