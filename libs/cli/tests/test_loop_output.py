"""``rtml loop`` prints its own lines only, and says what it leaves running.

MLflow's chatter while the loop trains its champion in-process (a "View run
... at: <url>" line on stdout, "Waiting up to 300 seconds for model version
to finish creation" on stderr) goes to the run's ``logs/training.log``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from rtml_cli.loop.command import still_running_note
from rtml_cli.loop.run import mlflow_output_to, train_champion
from rtml_cli.loop.scenario import LoopScenario, write_scenario_data
from rtml_localstack.state import default_state_dir

SUPPRESS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


@pytest.mark.integration
def test_training_prints_nothing_of_mlflow_and_logs_it_to_the_file(
        mlflow_server: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    scenario = LoopScenario()
    data = write_scenario_data(scenario, tmp_path / "data")
    log_file = tmp_path / "logs" / "training.log"
    capfd.readouterr()

    with mlflow_output_to(log_file):
        version = train_champion(scenario, data, mlflow_server.tracking_uri, "loop-output")

    printed = capfd.readouterr()
    assert version == "1"
    assert "mlflow" not in (printed.out + printed.err).lower(), printed
    assert "View run" not in printed.out
    assert "mlflow.store.model_registry" in log_file.read_text()  # the registry's wait line


def test_mlflow_logging_is_restored_afterwards(tmp_path: Path) -> None:
    import mlflow  # noqa: F401  (configures its logger)

    logger = logging.getLogger("mlflow")
    before = (list(logger.handlers), logger.propagate, logger.level, os.environ.get(SUPPRESS))
    with mlflow_output_to(tmp_path / "training.log"):
        assert [type(h) for h in logger.handlers] == [logging.FileHandler]
        assert os.environ[SUPPRESS] == "true"
        logger.info("from inside")
    assert (list(logger.handlers), logger.propagate, logger.level,
            os.environ.get(SUPPRESS)) == before
    assert "INFO mlflow: from inside" in (tmp_path / "training.log").read_text()


def test_the_last_line_says_mlflow_stays_up_and_how_to_stop_it(tmp_path: Path) -> None:
    note = still_running_note("http://127.0.0.1:5000", "loop-1", default_state_dir())
    assert "MLflow keeps running at http://127.0.0.1:5000 (model loop-1)" in note
    assert "`rtml stack down`" in note
    elsewhere = still_running_note("http://127.0.0.1:5000", "loop-1", tmp_path / "my stack")
    assert f"`rtml stack down --state-dir '{tmp_path / 'my stack'}'`" in elsewhere
