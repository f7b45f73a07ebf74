"""The whole pipeline against a real MLflow server: run layout, registration, the CLI.

A small simulated data set (500 customers, 1,000 terminals, 60 days) keeps the
file fast; the acceptance figures on the full default data are checked by the
slow test at the end.
"""

from __future__ import annotations

import json
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
from rtml_training.selection.search import SelectionConfig
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

    # No selection and no comparison families: every other step, calibration included.
    assert [step for kind, step in progress.events if kind == "done"] == [
        step for step in STEPS if step not in ("select", "compare")]
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
    # auto calibration: a Platt map where it beats the raw scores out of sample, else none;
    # either way the served model is the trained one and the run says which and why.
    assert result.calibration is not None and result.calibration.method in ("platt", "none")
    assert loaded.calibration == result.model.calibration
    assert (loaded.calibration is None) == (result.calibration.method == "none")
    assert version.tags["rtml.calibration"].startswith(result.calibration.method)
    assert "Brier" in version.tags["rtml.calibration"]
    assert metrics["brier"] == pytest.approx(result.calibration.brier)


def test_selection_logs_trials_as_child_runs_and_lineage_on_the_version(
        small_data: Path, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    name = f"selected-{tmp_path.name}"
    progress = Recorder()
    result = train(TrainConfig(
        data=small_data, name=name, split=SMALL_SPLIT, tracking_uri=mlflow_server.tracking_uri,
        xgb_params={"n_estimators": 30}, calibration="platt",
        selection=SelectionConfig(trials=3, folds=2, compare=("logistic-regression",))),
        progress)
    done = [step for kind, step in progress.events if kind == "done"]
    assert {"select", "calibrate", "compare"} <= set(done)
    xgboost, logistic = result.selection
    assert (xgboost.family, logistic.family) == ("xgboost", "logistic-regression")
    assert len(xgboost.trials) == 3 and xgboost.chosen_params["n_estimators"] == 30
    assert result.model_params["max_depth"] == xgboost.chosen_params["max_depth"]
    models = [row.model for row in result.comparison if row.source == "this run"]
    assert models == ["xgboost, selected", "logistic regression, selected"]

    client = MlflowClient(mlflow_server.tracking_uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert len(children) == 6
    by_name = {c.info.run_name: c for c in children}
    first = by_name["xgboost-trial-000"]
    assert {"fold0_ap", "fold1_ap", "ap_mean", "ap_std", "value"} <= set(first.data.metrics)
    assert first.data.params["n_estimators"] == "30"
    assert first.data.params["max_depth"] == "6"                  # trial 0: the defaults
    best = [c for c in children if c.data.tags["rtml.selection.best"] == "true"]
    assert len(best) == 2
    run = client.get_run(result.run_id)
    assert run.data.params["selection.metric"] == "ap"
    assert run.data.metrics["selection_xgboost_trials"] == 3
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "selection")}
    assert artifacts == {"selection/trials.json", "selection/space.json"}

    assert result.model_version is not None
    tags = result.model_version.tags
    assert json.loads(tags["rtml.selection.chosen_params"]) == xgboost.chosen_params
    assert json.loads(tags["rtml.selection.fixed_params"]) == {"n_estimators": 30}
    assert "n_estimators" not in tags["rtml.selection.space"]
    assert tags["rtml.selection.metric"] == "ap" and tags["rtml.selection.trials"].startswith("3")
    assert tags["rtml.calibration"].startswith("platt")
    served = MlflowRegistry(mlflow_server.tracking_uri).load(
        name, result.model_version.version, tmp_path / "model")
    assert served.calibration == result.model.calibration is not None


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


def test_cli_selects_with_fixed_parameters_and_a_comparison_family(
        small_data: Path, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("xgboost:\n  n_estimators: 25\n")
    name = f"cli-select-{tmp_path.name}"
    outcome = CliRunner().invoke(app, [
        "train", "--data", str(small_data), "--name", name, "--train-start", "2018-05-06",
        "--tracking-uri", mlflow_server.tracking_uri, "--no-register", "--params", str(params),
        "--select", "--trials", "2", "--compare", "logistic-regression", "--metric", "auc"],
        env={"COLUMNS": "200"})
    assert outcome.exit_code == 0, outcome.output
    text = outcome.output
    assert "model selection (prequential validation)" in text
    assert "xgboost, selected" in text and "logistic regression, selected" in text
    assert "validation AUC" in text and "'n_estimators': 25" in text
    assert "targets (model selection, baseline" in text and "calibration:" in text
    client = MlflowClient(mlflow_server.tracking_uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 + 2 + 2          # the training run and one child per trial
