"""rtml_drift_monitor settings: defaults, overrides, thresholds maps and the window rules.

The contract every service keeps (README, entry point, shared settings) is
checked for all of them in ``tests/test_service_configs.py``, where the entry
point runs in a subprocess; here :func:`main` is called directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from rtml_common.service_config import EXIT_BAD_CONFIG
from rtml_drift_monitor.__main__ import main
from rtml_drift_monitor.alerts import Thresholds
from rtml_drift_monitor.config import RetrainPolicy, Settings
from rtml_drift_monitor.monitor import thresholds, window_spec
from rtml_drift_monitor.windows import WindowKind

# services/conftest.py: RTML_* variables of the shell must not change the defaults.
pytestmark = pytest.mark.usefixtures("clean_environment")

#: Defaults the README promises; changing one is a behaviour change.
EXPECTED_DEFAULTS = {
    "model_name": "fraud-detector",
    "consumer_group": "rtml-drift-monitor",
    "window_s": 86400,
    "sliding_window_s": 7 * 86400,
    "allowed_lateness_s": 3600,
    "idle_partition_s": 30.0,
    "start_at": None,
    "min_window_events": 1000,
    "psi_threshold": 0.2,
    "js_threshold": 0.02,
    "psi_thresholds": {},
    "tumbling_psi_thresholds": {"tx_during_weekend": None},
    "raise_after_windows": 1,
    "clear_after_windows": 3,
    "clear_ratio": 0.5,
    "retrain_policy": "on-alert",
    "retrain_cooldown_s": 7 * 86400,
    "training_lookback_s": 21 * 86400,
    "refresh_interval_s": 60.0,
    "state_dir": Path(".rtml/drift-monitor"),
    "checkpoint_interval_s": 5.0,
    "exit_when_idle_s": 0.0,
}


def test_defaults_parse_to_the_documented_values() -> None:
    assert Settings().model_dump() == EXPECTED_DEFAULTS


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


def test_threshold_maps_come_from_json_with_null_meaning_not_alerted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RTML_DRIFT_MONITOR_PSI_THRESHOLDS",
                       '{"score": 0.1, "terminal_id_risk_1day_window": null}')
    monkeypatch.setenv("RTML_DRIFT_MONITOR_TUMBLING_PSI_THRESHOLDS", '{"tx_during_night": 0.5}')
    table = thresholds(Settings())
    assert isinstance(table, Thresholds)
    assert table.for_subject(WindowKind.SLIDING, "score") == 0.1
    assert table.for_subject(WindowKind.TUMBLING, "terminal_id_risk_1day_window") is None
    assert table.for_subject(WindowKind.TUMBLING, "tx_during_night") == 0.5
    assert table.for_subject(WindowKind.SLIDING, "tx_during_night") == 0.2
    # Replacing the tumbling map drops the default weekend override: it is the whole map.
    assert table.for_subject(WindowKind.TUMBLING, "tx_during_weekend") == 0.2


def test_default_weekend_flag_is_alerted_on_weekly_windows_only() -> None:
    table = thresholds(Settings())
    assert table.for_subject(WindowKind.TUMBLING, "tx_during_weekend") is None
    assert table.for_subject(WindowKind.SLIDING, "tx_during_weekend") == 0.2


@pytest.mark.parametrize("variable,value,field", [
    ("RTML_DRIFT_MONITOR_PSI_THRESHOLDS", '{"score": 0}', "psi_thresholds"),
    ("RTML_DRIFT_MONITOR_TUMBLING_PSI_THRESHOLDS", '{"score": -1}', "tumbling_psi_thresholds"),
    ("RTML_DRIFT_MONITOR_CLEAR_RATIO", "1.5", "clear_ratio"),
    ("RTML_DRIFT_MONITOR_RAISE_AFTER_WINDOWS", "0", "raise_after_windows"),
])
def test_invalid_values_name_the_field(monkeypatch: pytest.MonkeyPatch, variable: str,
                                      value: str, field: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=field):
        Settings()


def test_sliding_window_must_be_whole_hops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_DRIFT_MONITOR_WINDOW_S", "3600")
    monkeypatch.setenv("RTML_DRIFT_MONITOR_SLIDING_WINDOW_S", "5400")
    with pytest.raises(ValidationError, match="multiple of window_s"):
        Settings()


def test_window_spec_is_in_milliseconds() -> None:
    spec = window_spec(Settings())
    assert (spec.size_ms, spec.sliding_panes, spec.lateness_ms, spec.min_events) == (
        86_400_000, 7, 3_600_000, 1000)


def test_the_reference_is_read_where_training_writes_it() -> None:
    from rtml_drift_monitor.reference import REFERENCE_ARTIFACT
    from rtml_training.mlflow_logging import REFERENCE_ARTIFACT as WRITTEN

    assert REFERENCE_ARTIFACT == WRITTEN
