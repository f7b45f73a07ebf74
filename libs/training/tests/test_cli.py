"""``rtml train`` failures that need no server: a clear message and exit code 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from rtml_cli.app import app
from rtml_cli.train import DEFAULT_TRAIN_START
from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_training.split import SplitConfig

runner = CliRunner()


def test_missing_data_fails_with_a_hint(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--data", str(tmp_path), "--no-mlflow"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "rtml simulate --out" in result.output


def test_a_split_outside_the_data_fails_naming_the_data_range(tmp_path: Path) -> None:
    sim = simulate(SimulationConfig(n_customers=50, n_terminals=100, n_days=5,
                                    radius=5.0 * (10_000 / 100) ** 0.5))
    data = write_dataset(sim, tmp_path / "tiny")
    result = runner.invoke(app, ["train", "--data", str(data), "--no-mlflow"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "covers 2018-04-01..2018-04-05" in result.output


def test_an_unreachable_mlflow_fails_before_training(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--data", str(tmp_path), "--tracking-uri",
                                 "http://127.0.0.1:9"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "no MLflow server at http://127.0.0.1:9" in result.output


def test_bad_options_are_usage_errors() -> None:
    assert runner.invoke(app, ["train", "--train-start", "July"]).exit_code == 2
    assert runner.invoke(app, ["train", "--model", "lightgbm"]).exit_code == 2
    assert runner.invoke(app, ["train", "--folds", "-1"]).exit_code == 2


def test_mounting_the_command_imports_no_training_stack() -> None:
    """`rtml simulate` and friends must not pay for MLflow / XGBoost / River imports."""
    code = ("import sys, rtml_cli.train; heavy = ('mlflow', 'xgboost', 'river', 'sklearn'); "
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_default_train_start_is_the_protocol_s() -> None:
    assert SplitConfig().train_start.isoformat() == DEFAULT_TRAIN_START


def test_a_bad_parameter_file_is_a_usage_error_naming_the_key(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("xgboost:\n  max_dept: 4\n")
    result = runner.invoke(app, ["train", "--data", str(tmp_path), "--no-mlflow",
                                 "--params", str(params)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "max_dept" in result.output and f"{params}:2" in result.output


def test_selection_options_are_checked_before_any_work(tmp_path: Path) -> None:
    compare_alone = runner.invoke(app, ["train", "--data", str(tmp_path), "--no-mlflow",
                                        "--compare", "random-forest"], env={"COLUMNS": "200"})
    assert compare_alone.exit_code == 2 and "--compare needs --select" in compare_alone.output
    unknown = runner.invoke(app, ["train", "--data", str(tmp_path), "--no-mlflow", "--select",
                                  "--compare", "svm"], env={"COLUMNS": "200"})
    assert unknown.exit_code == 2 and "random-forest" in unknown.output
    assert runner.invoke(app, ["train", "--metric", "f1"]).exit_code == 2
    assert runner.invoke(app, ["train", "--calibration", "beta"]).exit_code == 2
    assert runner.invoke(app, ["train", "--trials", "0"]).exit_code == 2
