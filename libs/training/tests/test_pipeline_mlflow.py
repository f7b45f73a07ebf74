"""The whole pipeline against a real MLflow server: run layout, registration, the CLI.

A small simulated data set (500 customers, 1,000 terminals, 60 days) keeps the
file fast; the acceptance figures on the full default data are checked by the
slow test at the end.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from rtml_cli.app import app
from rtml_features.baseline import BASELINE
from rtml_localstack.testing import MlflowServer
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_monitoring.reference import ReferenceDistributions
from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_training.config import TrainConfig
from rtml_training.mlflow_logging import (
    HOLDOUT_ARTIFACT,
    REFERENCE_ARTIFACT,
    TABLE_ARTIFACT,
)
from rtml_training.pipeline import STEPS, train
from rtml_training.split import SplitConfig

pytestmark = pytest.mark.integration

SMALL = SimulationConfig(n_customers=500, n_terminals=1_000, n_days=60,
                         radius=5.0 * (10_000 / 1_000) ** 0.5)
#: Day 35 of the small run: 30-day windows are warm, and 21 days fit before day 60.
SMALL_SPLIT = SplitConfig(train_start=date(2018, 5, 6))


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(simulate(SMALL), tmp_path_factory.mktemp("small"))


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def step_started(self, step: str) -> None:
        self.events.append(("start", step))

    def step_finished(self, step: str, seconds: float, detail: str) -> None:
        assert seconds >= 0 and detail
        self.events.append(("done", step))


def test_pipeline_logs_the_run_and_registers_the_model(
        small_data: Path, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    name = f"fraud-{tmp_path.name}"
    progress = Recorder()
    result = train(TrainConfig(data=small_data, name=name, split=SMALL_SPLIT, folds=2,
                               tracking_uri=mlflow_server.tracking_uri), progress)

    assert [step for kind, step in progress.events if kind == "done"] == list(STEPS)
    assert result.run_id is not None and result.model_version is not None
    client = MlflowClient(mlflow_server.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "xgboost-2018-05-06"
    metrics = run.data.metrics
    for key in ("auc", "ap", "cp_at_100", "train_rows", "test_rows", "train_fraud_rate",
                "test_fraud_rate", "test_removed_known", "fold0_auc", "fold1_cp_at_100",
                "folds_mean_ap", "seconds_fit"):
        assert key in metrics, key
    assert metrics["auc"] == pytest.approx(result.metrics.auc)
    assert metrics["train_rows"] == result.split.train_rows > 0
    assert len(client.get_metric_history(result.run_id, "cp_at_100_day")) == 7
    params = run.data.params
    assert params["split.train_start"] == "2018-05-06"
    assert params["split.test_last_day"] == "2018-05-26"
    assert params["feature_set_version"] == BASELINE.version
    assert params["model.random_state"] == "0" and params["folds"] == "2"
    tags = run.data.tags
    assert tags["rtml.data_fingerprint"] == result.fingerprint.sha256
    assert tags["rtml.feature_set"] == "baseline"
    assert tags["rtml.feature_set_version"] == BASELINE.version
    assert tags["rtml.code_version"] == result.code_version != ""

    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"reference", "evaluation", "validation", "model"} <= artifacts
    local = Path(client.download_artifacts(result.run_id, "", str(tmp_path / "artifacts")))
    reference = ReferenceDistributions.from_json((local / REFERENCE_ARTIFACT).read_text())
    assert list(reference.features) == BASELINE.names and reference.score is not None
    assert reference.feature_set_version == BASELINE.version
    assert "| this run | xgboost |" in (local / TABLE_ARTIFACT).read_text()
    holdout = pd.read_parquet(local / HOLDOUT_ARTIFACT)
    assert list(holdout.columns) == [*BASELINE.names, "is_fraud", "transaction_id"]
    assert 0 < len(holdout) <= 2_000

    version = result.model_version
    assert version.name == name and version.version == "1"
    assert version.run_id == result.run_id
    assert version.data_fingerprint == result.fingerprint.sha256
    assert version.feature_set_version == BASELINE.version
    assert version.code_version == result.code_version and version.aliases == ()
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    loaded = registry.load(name, "1", tmp_path / "model")
    rows = holdout[BASELINE.names].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(loaded.predict(rows), result.model.predict(rows))


def test_cli_trains_river_without_registering(
        small_data: Path, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    name = f"river-{tmp_path.name}"
    outcome = CliRunner().invoke(app, [
        "train", "--data", str(small_data), "--model", "river", "--name", name,
        "--train-start", "2018-05-06", "--tracking-uri", mlflow_server.tracking_uri,
        "--no-register"], env={"COLUMNS": "200"})
    assert outcome.exit_code == 0, outcome.output
    assert "this run" in outcome.output and "targets" in outcome.output
    assert "register the model" not in outcome.output
    client = MlflowClient(mlflow_server.tracking_uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["rtml.model_kind"] == "river"
    assert not [m for m in client.search_registered_models() if m.name == name]


@pytest.mark.slow
def test_full_default_data_meets_the_targets(
        mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The issue's acceptance check: XGBoost on the default data, the handbook's split."""
    data = write_dataset(simulate(SimulationConfig()), tmp_path_factory.mktemp("default"))
    result = train(TrainConfig(data=data, name="fraud-acceptance",
                               tracking_uri=mlflow_server.tracking_uri))
    assert result.split.train_rows > 60_000 and result.split.test_rows > 50_000
    assert result.metrics.auc >= 0.86
    assert result.metrics.ap >= 0.62
    assert result.metrics.cp_at_k >= 0.27
    assert result.targets_met == {"auc": True, "ap": True, "cp_at_100": True}
    assert result.model_version is not None
