"""``rtml train``: train, evaluate, log and register a fraud model from a simulator data set.

A thin layer over :func:`rtml_training.pipeline.train`: it turns options into a
:class:`~rtml_training.config.TrainConfig`, shows each step as it runs and
prints our figures beside the published ones. It never moves an alias:
promotion (``champion``) goes through the registry service, which runs the
validation gate first.

Training imports (MLflow, XGBoost, River, scikit-learn: ~2 s) happen inside
the command, so mounting it keeps every other ``rtml`` command fast.
"""

from __future__ import annotations

import logging
import os
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.status import Status

from rtml_common.config import MlflowSettings
from rtml_features.baseline import default_feature_set
from rtml_localstack.console import make_console
from rtml_simulator.cli import DEFAULT_DATA_DIR

if TYPE_CHECKING:
    from rtml_training.result import TrainResult

console = make_console()

#: The evaluation protocol's default first training day (rtml_training.split.SplitConfig).
DEFAULT_TRAIN_START = "2018-07-25"
#: Where the registry service listens by default (services/model-registry).
REGISTRY_URL = "http://127.0.0.1:8000"


class ModelChoice(StrEnum):
    XGBOOST = "xgboost"
    RIVER = "river"


class MetricChoice(StrEnum):
    AP = "ap"
    AUC = "auc"
    CP = "cp"


class CalibrationChoice(StrEnum):
    AUTO = "auto"
    PLATT = "platt"
    ISOTONIC = "isotonic"
    NONE = "none"


class ConsoleProgress:
    """A spinner while a step runs, then one line with its time and what it found."""

    def __init__(self, out: Console, titles: dict[str, str]) -> None:
        self.console = out
        self.titles = titles
        self.status: Status | None = None
        self.number = 0

    def step_started(self, step: str) -> None:
        self.number += 1
        self.status = self.console.status(f"{self.titles.get(step, step)}...")
        self.status.start()

    def step_advanced(self, step: str, detail: str) -> None:
        """A long step's running summary (the selection's trial count, best and ETA)."""
        if self.status is not None:
            self.status.update(f"{self.titles.get(step, step)}: {detail}")

    def step_finished(self, step: str, seconds: float, detail: str) -> None:
        self.close()
        title = self.titles.get(step, step)
        self.console.print(f"[green]done[/] {title} [dim]({seconds:.1f} s)[/] {detail}",
                           highlight=False)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


def _parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected YYYY-MM-DD, got {value!r}") from None


def print_outcome(result: TrainResult, out: Console) -> None:
    """The comparison table, the targets, and what was logged / registered."""
    from rtml_training.published import comparison_table

    out.print(comparison_table(
        result.comparison, title=f"Test results, {result.config.split.describe()}"))
    checks, targets = result.targets_met, result.targets
    parts = [f"AUC >= {targets.auc} {'met' if checks['auc'] else 'NOT met'}",
             f"AP >= {targets.ap} {'met' if checks['ap'] else 'NOT met'}",
             f"CP@100 >= {targets.cp_at_100} {'met' if checks['cp_at_100'] else 'NOT met'}"]
    kind = ("model selection, " + result.feature_set.name) if result.selection else "training"
    out.print(f"targets ({kind}; defined for XGBoost on the default data): " + "; ".join(parts),
              highlight=False)
    if result.selection:
        found = result.selection[0]
        out.print(f"chosen parameters (trial {found.best.number} of {len(found.trials)}): "
                  f"{found.chosen_params}", highlight=False, soft_wrap=True)
    calibration = result.calibration
    if calibration is not None:
        out.print(f"calibration: {calibration.method} ({calibration.reason}; "
                  f"{calibration.fit_rows:,} validation rows); test Brier "
                  f"{calibration.brier_raw:.5f} raw -> {calibration.brier:.5f}, ECE "
                  f"{calibration.ece_raw:.5f} -> {calibration.ece:.5f}", highlight=False)
    total = sum(result.timings.values())
    out.print(f"[dim]steps took {total:.1f} s in all[/]")
    if result.run_id:
        out.print(f"MLflow run {result.run_id} (experiment {result.config.experiment_name!r}): "
                  f"{result.run_url}", highlight=False, soft_wrap=True)
    version = result.model_version
    if version is not None:
        out.print(f"registered [bold]{version.name}[/] version [bold]{version.version}[/] "
                  f"(data fingerprint {result.fingerprint.sha256[:12]}...)", highlight=False)
        base = f"{REGISTRY_URL}/v1/models/{version.name}"
        key = '-H "X-API-Key: $RTML_MODEL_REGISTRY_API_KEY"'
        body = (f'{{"version": "{version.version}", "actor": "<you>", '
                f'"reason": "rtml train: AP {result.metrics.ap:.3f}"}}')
        out.print(
            "next: promote it through the registry service, which runs the validation gate:\n"
            f"  curl -X POST {key} '{base}/versions/{version.version}/validate?alias=champion'"
            "   # dry run\n"
            f"  curl -X PUT {key} -H 'content-type: application/json' -d '{body}' "
            f"{base}/aliases/champion",
            highlight=False, soft_wrap=True, markup=False)


def train_command(
    data: Annotated[Path, typer.Option(
        help="Simulator data set directory (or its transactions.parquet).")] = DEFAULT_DATA_DIR,
    model: Annotated[ModelChoice, typer.Option(help="Model to train.")] = ModelChoice.XGBOOST,
    name: Annotated[str, typer.Option(
        help="Registered model name (and MLflow experiment).")] = "fraud-detector",
    feature_set: Annotated[str | None, typer.Option(
        show_default=False,
        help="Feature set to train on (default $RTML_FEATURE_SET, else extended; "
             "baseline: the handbook's 15).")] = None,
    train_start: Annotated[str, typer.Option(
        help="First training day (YYYY-MM-DD); 7 train, 7 delay, 7 test days follow.",
    )] = DEFAULT_TRAIN_START,
    folds: Annotated[int, typer.Option(
        min=0, help="Prequential folds to evaluate (each one test length earlier); 0 = none.",
    )] = 0,
    tracking_uri: Annotated[str | None, typer.Option(
        show_default=False,
        help="MLflow tracking server (default $RTML_MLFLOW_TRACKING_URI, else "
             "http://127.0.0.1:5000).")] = None,
    register: Annotated[bool, typer.Option(
        "--register/--no-register", help="Register the model in the MLflow registry.")] = True,
    use_mlflow: Annotated[bool, typer.Option(
        "--mlflow/--no-mlflow", help="Log the run to MLflow (--no-mlflow: evaluate only).",
    )] = True,
    params: Annotated[Path | None, typer.Option(
        "--params", show_default=False, exists=True, dir_okay=False,
        help="YAML or JSON file of model parameters (flat, or xgboost:/river: sections); "
             "with --select they are fixed and the search varies the rest.")] = None,
    select: Annotated[bool, typer.Option(
        "--select/--no-select",
        help="Model selection: a seeded search over prequential validation folds, the "
             "chosen parameters retrained and tested once.")] = False,
    metric: Annotated[MetricChoice, typer.Option(
        help="What the selection maximises (mean over the validation folds).",
    )] = MetricChoice.AP,
    trials: Annotated[int, typer.Option(min=1, help="Trials per searched family.")] = 100,
    search_timeout: Annotated[float, typer.Option(
        min=1, help="Seconds per searched family after which no new trial starts.")] = 480.0,
    compare: Annotated[list[str] | None, typer.Option(
        show_default=False,
        help="Also search this family for the comparison table (repeatable): "
             "logistic-regression, random-forest, river, xgboost. Never registered.")] = None,
    calibration: Annotated[CalibrationChoice, typer.Option(
        help="Calibration map kept inside the model (auto: platt for XGBoost, none for "
             "River).")] = CalibrationChoice.AUTO,
) -> None:
    """Train a fraud model, evaluate it against the published results, log and register it."""
    from mlflow.exceptions import MlflowException

    from rtml_models.registry.base import RegistryError
    from rtml_simulator.frames import DatasetError
    from rtml_training.config import TrainConfig
    from rtml_training.mlflow_logging import MlflowUnavailable
    from rtml_training.params import ParamsError, load_params_file
    from rtml_training.pipeline import STEPS, train
    from rtml_training.selection.families import FAMILIES
    from rtml_training.selection.search import SelectionConfig
    from rtml_training.split import SplitConfig, SplitError

    uri = (tracking_uri or MlflowSettings().tracking_uri) if use_mlflow else None
    # MLflow's own chatter (run URLs on stdout, registry waits) would break the step lines;
    # the run's URL is printed at the end instead.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    kind: Literal["xgboost", "river"] = "river" if model is ModelChoice.RIVER else "xgboost"
    unknown = sorted(set(compare or ()) - set(FAMILIES))
    if unknown:
        raise typer.BadParameter(f"unknown famil(ies) {unknown}; known: "
                                 f"{', '.join(sorted(FAMILIES))}", param_hint="--compare")
    try:
        given = load_params_file(params, default_kind=kind) if params else None
    except ParamsError as exc:
        console.print(f"[red]bad parameter file:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    selection = SelectionConfig(metric=metric.value, trials=trials, timeout_s=search_timeout,
                                compare=tuple(compare or ())) if select else None
    if compare and not select:
        raise typer.BadParameter("--compare needs --select", param_hint="--compare")
    config = TrainConfig(
        data=data, model=kind, name=name, feature_set=feature_set or default_feature_set(),
        split=SplitConfig(train_start=_parse_date(train_start)), folds=folds,
        tracking_uri=uri, register=register and use_mlflow,
        xgb_params=given.for_kind("xgboost") if given else {},
        river_params=given.for_kind("river") if given else {},
        selection=selection, calibration=calibration.value,
    )
    console.print(f"[bold]rtml train[/]: {config.model} on {data} "
                  f"({config.split.describe()})", highlight=False)
    progress = ConsoleProgress(console, STEPS)
    try:
        result = train(config, progress)
    except (DatasetError, SplitError, MlflowUnavailable, MlflowException, RegistryError,
            KeyError) as exc:
        progress.close()
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        console.print(f"[red]training failed:[/] {message}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        progress.close()
    print_outcome(result, console)
