"""rtml_retrain_worker settings: documented defaults, an override, the key and URL checks.

The contract every service keeps (README, entry point, shared settings) is
checked for all of them in ``tests/test_service_configs.py``.
"""

from __future__ import annotations

import pytest

from rtml_common.service_config import EXIT_BAD_CONFIG
from rtml_retrain_worker.__main__ import main
from rtml_retrain_worker.config import Settings
from rtml_retrain_worker.service import policy_of, selection_of

pytestmark = pytest.mark.usefixtures("clean_environment")

#: Defaults the README promises; changing one is a behaviour change.
EXPECTED_DEFAULTS = {
    "model_name": "fraud-detector",
    "consumer_group": "rtml-retrain-worker",
    "segment_max_events": 100_000,
    "train_days": 14,
    "gap_days": 0,
    "test_days": 7,
    "label_maturity_days": 7.0,
    "min_days_after_drift": 3,
    "registry_url": "http://127.0.0.1:8000",
    "registry_api_key": None,
    "exit_when_idle_s": 0.0,
    "select": False,
    "select_trials": 20,
    "select_timeout_s": 300.0,
    "select_metric": "ap",
    "calibration": "auto",
}


def test_defaults_parse_to_the_documented_values() -> None:
    assert Settings().model_dump(include=set(EXPECTED_DEFAULTS)) == EXPECTED_DEFAULTS


def test_environment_overrides_reach_the_split_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_RETRAIN_WORKER_TRAIN_DAYS", "21")
    monkeypatch.setenv("RTML_RETRAIN_WORKER_LABEL_MATURITY_DAYS", "2.5")
    policy = policy_of(Settings())
    assert policy.train_days == 21 and policy.label_maturity.total_seconds() == 2.5 * 86400


def test_selection_is_off_by_default_and_configured_by_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert selection_of(Settings()) is None
    monkeypatch.setenv("RTML_RETRAIN_WORKER_SELECT", "true")
    monkeypatch.setenv("RTML_RETRAIN_WORKER_SELECT_TRIALS", "7")
    monkeypatch.setenv("RTML_RETRAIN_WORKER_SELECT_METRIC", "cp")
    selection = selection_of(Settings())
    assert selection is not None
    assert (selection.trials, selection.metric, selection.timeout_s) == (7, "cp", 300.0)


@pytest.mark.parametrize(("variable", "value"), [
    ("RTML_RETRAIN_WORKER_SELECT_METRIC", "f1"),
    ("RTML_RETRAIN_WORKER_CALIBRATION", "beta"),
    ("RTML_RETRAIN_WORKER_SELECT_TRIALS", "0"),
    ("RTML_RETRAIN_WORKER_REGISTRY_API_KEY", "short"),
    ("RTML_RETRAIN_WORKER_REGISTRY_URL", "registry:8000"),
])
def test_bad_registry_settings_exit_2_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str,
        value: str) -> None:
    monkeypatch.setenv(variable, value)
    assert main() == EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert variable in err and (value not in err or "KEY" not in variable)
