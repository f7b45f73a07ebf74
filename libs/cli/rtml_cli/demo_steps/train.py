"""Demo step: train the champion candidate and an online challenger, register both.

The demo trains on the very data set it replayed, with the evaluation
protocol's default split, through the same pipeline as ``rtml train``
(:func:`rtml_training.pipeline.train`), so the figures it prints are the
acceptance figures. Both versions are only *registered*: aliases move in
the next step, through the registry service and its validation gate.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from rich.table import Table

from rtml_cli.demo_steps.context import DemoContext, DemoError

if TYPE_CHECKING:
    from rtml_training.result import TrainResult

class _Quiet:
    """Progress sink: the demo prints one line per model, not per pipeline step."""

    def step_started(self, step: str) -> None:
        return None

    def step_finished(self, step: str, seconds: float, detail: str) -> None:
        return None


def tracking_uri(ctx: DemoContext) -> str:
    """The stack's MLflow server, or a clear error when it isn't part of this run."""
    uri = ctx.client_env.get("RTML_MLFLOW_TRACKING_URI")
    if not uri:
        raise DemoError("no MLflow server in this stack: the demo needs it to register models "
                        "(don't pass --without mlflow)")
    return uri


def train_models(ctx: DemoContext) -> None:
    """Train XGBoost (champion candidate) and River (online challenger); register both."""
    from rtml_simulator.frames import DatasetError
    from rtml_training.config import TrainConfig
    from rtml_training.pipeline import train
    from rtml_training.split import SplitConfig, SplitError

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    uri = tracking_uri(ctx)
    split = (SplitConfig() if ctx.settings.train_start is None
             else SplitConfig(train_start=ctx.settings.train_start))
    results: list[TrainResult] = []
    for kind in ("xgboost", "river"):
        config = TrainConfig(data=ctx.settings.data_dir, model=kind, name=ctx.settings.model_name,
                             split=split, tracking_uri=uri)
        try:
            result = train(config, _Quiet())
        except (DatasetError, SplitError) as exc:
            raise DemoError(f"training {kind}: {exc}") from exc
        version = result.model_version
        assert version is not None  # register=True with a tracking URI
        ctx.console.print(
            f"  {kind}: AUC {result.metrics.auc:.3f}, AP {result.metrics.ap:.3f}, "
            f"CP@100 {result.metrics.cp_at_k:.3f} -> {version.name} v{version.version}",
            highlight=False)
        results.append(result)
    ctx.trained = results
    ctx.add_section("models trained and registered", _table(results))


def _table(results: list[TrainResult]) -> Table:
    """Our test figures beside the handbook's single-split results."""
    from rtml_training.published import PUBLISHED

    first = results[0]
    table = Table(show_header=True, box=None, pad_edge=False, caption=(
        f"test split {first.config.split.describe()}: {first.split.train_rows:,} train / "
        f"{first.split.test_rows:,} test rows; data fingerprint "
        f"{first.fingerprint.sha256[:12]}"))
    for column in ("model", "version", "AUC", "AP", "CP@100"):
        table.add_column(column, no_wrap=True)
    for result in results:
        version = result.model_version
        table.add_row(result.config.model, version.version if version else "-",
                      f"{result.metrics.auc:.3f}", f"{result.metrics.ap:.3f}",
                      f"{result.metrics.cp_at_k:.3f}")
    for published in PUBLISHED:
        if not published.note:  # the single-split rows: the same experiment as ours
            table.add_row(f"[dim]handbook {published.model}[/]", "",
                          f"[dim]{published.auc:.3f}[/]", f"[dim]{published.ap:.3f}[/]",
                          f"[dim]{published.cp_at_100:.3f}[/]")
    return table
