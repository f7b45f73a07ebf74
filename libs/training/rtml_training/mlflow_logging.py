"""Record a training run in MLflow and register its model: the run's layout in one place.

A run holds what is needed to trust, compare and reproduce a model:

* **params** — the model's parameters (``model.<name>``), the split dates and
  lengths (``split.*``), the feature set's name and version, the data path,
  folds, k, bins, seed;
* **metrics** — ``auc``, ``ap``, ``cp_at_<k>`` (and ``cp_at_<k>_day`` with one
  step per test day), train/test row and fraud counts and rates, known-card
  removals, ``fold<i>_*`` and ``folds_mean_*`` / ``folds_std_*`` with folds,
  ``seconds_<step>`` timings;
* **tags** — ``rtml.data_fingerprint``, ``rtml.feature_set``,
  ``rtml.feature_set_version``, ``rtml.code_version``, ``rtml.model_kind``,
  ``rtml.targets_met``, plus the config's own ``tags`` (lineage such as a
  retrain request's id), which also go on the registered version;
* **artifacts** — ``reference/distributions.json`` (drift monitor),
  ``evaluation/table.md`` (our figures beside the published ones),
  ``evaluation/metrics.json``, ``evaluation/reliability.json`` (raw vs
  calibrated scores on the test period), ``validation/holdout.parquet`` (test
  rows the registry's validation gate scores), ``selection/trials.json`` and
  ``selection/space.json`` (with a selection) and, once registered, ``model/``
  (written by :class:`rtml_models.registry.mlflow.MlflowRegistry`);
* **child runs** — with a selection, one per trial (``<family>-trial-<n>``,
  parent tag ``mlflow.parentRunId``): its parameters, its figures per
  validation fold, their mean and spread, its state (pruned trials end KILLED).

The registered version also carries the selection's lineage
(``rtml.selection.*``: metric, space, trials, chosen parameters, validation
mean and spread) and ``rtml.calibration``.

The model version created by registration carries the fingerprint and code
version tags too (the registry adds flavor, digest and feature set), so a
version answers "what was this trained on, by which code" without its run.
Aliases are *not* set here: moving ``champion`` is the registry service's job,
after its validation gate.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from rtml_models.registry.base import (
    TAG_CODE_VERSION,
    TAG_DATA_FINGERPRINT,
    TAG_FEATURE_SET,
    TAG_FEATURE_SET_VERSION,
    ModelVersion,
)
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_training.metrics import Metrics, spread_of
from rtml_training.published import comparison_markdown
from rtml_training.result import SplitSummary, TrainResult

TAG_MODEL_KIND = "rtml.model_kind"
TAG_TARGETS_MET = "rtml.targets_met"

TAG_SELECTION_PREFIX = "rtml.selection."
TAG_CALIBRATION = "rtml.calibration"
TAG_PARENT_RUN = "mlflow.parentRunId"

REFERENCE_ARTIFACT = "reference/distributions.json"
RELIABILITY_ARTIFACT = "evaluation/reliability.json"
TRIALS_ARTIFACT = "selection/trials.json"
SPACE_ARTIFACT = "selection/space.json"
TABLE_ARTIFACT = "evaluation/table.md"
METRICS_ARTIFACT = "evaluation/metrics.json"
HOLDOUT_ARTIFACT = "validation/holdout.parquet"

#: MLflow's limit on a parameter value.
_MAX_PARAM = 6000
#: MLflow's limit on a model version tag value.
_MAX_TAG = 5000


class MlflowUnavailable(RuntimeError):
    """The tracking server does not answer; the message names the URI."""


def check_server(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast on an unreachable HTTP tracking server.

    MLflow's client retries a dead server with back-off for minutes; checking
    ``/health`` first turns that into an immediate, clear error before the
    training work starts. Non-HTTP URIs (file, sqlite) are not checked.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            if response.status != 200:
                raise MlflowUnavailable(f"MLflow at {tracking_uri}: /health said {response.status}")
    except (urllib.error.URLError, OSError) as exc:
        raise MlflowUnavailable(
            f"no MLflow server at {tracking_uri} ({exc}); start one with `rtml stack up` "
            "or pass --tracking-uri / RTML_MLFLOW_TRACKING_URI") from exc


def code_version(where: Path | None = None) -> str:
    """The git commit of the working tree (``-dirty`` if it has changes), else the package version.

    Ties a model to the code that trained it; "dirty" warns that the commit
    alone does not reproduce it.
    """
    cwd = where or Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=cwd, capture_output=True,
                                text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"rtml-training=={importlib.metadata.version('rtml-training')}"
    return head + ("-dirty" if status else "")


def run_params(result: TrainResult) -> dict[str, str]:
    """The run's parameters (see the module doc)."""
    config, split = result.config, result.config.split
    params: dict[str, Any] = {
        "model": config.model,
        "feature_set": result.feature_set.name,
        "feature_set_version": result.feature_set.version,
        "data_path": str(Path(config.data).resolve()),
        "split.train_start": split.train_start.isoformat(),
        "split.train_last_day": split.train_last_day.isoformat(),
        "split.test_start": split.test_start.isoformat(),
        "split.test_last_day": split.test_last_day.isoformat(),
        "split.train_days": split.train_days,
        "split.delay_days": split.delay_days,
        "split.test_days": split.test_days,
        "folds": config.folds,
        "k": config.k,
        "bins": config.bins,
        "holdout_rows": config.holdout_rows,
        "seed": config.seed,
        "calibration": config.calibration_method,
    }
    if config.selection is not None:
        selection = config.selection
        params.update({"selection.metric": selection.metric, "selection.trials": selection.trials,
                       "selection.timeout_s": selection.timeout_s,
                       "selection.folds": selection.folds,
                       "selection.compare": ",".join(selection.compare) or "none",
                       "selection.prune": selection.prune})
    params.update({f"model.{key}": value for key, value in result.model_params.items()})
    return {key: str(value)[:_MAX_PARAM] for key, value in params.items()}


def _split_metrics(summary: SplitSummary, prefix: str = "") -> dict[str, float]:
    return {
        f"{prefix}train_rows": summary.train_rows,
        f"{prefix}test_rows": summary.test_rows,
        f"{prefix}train_frauds": summary.train_frauds,
        f"{prefix}test_frauds": summary.test_frauds,
        f"{prefix}train_fraud_rate": summary.train_fraud_rate,
        f"{prefix}test_fraud_rate": summary.test_fraud_rate,
        f"{prefix}test_removed_known": summary.removed_known,
    }


def _figures(metrics: Metrics, prefix: str = "") -> dict[str, float]:
    return {f"{prefix}auc": metrics.auc, f"{prefix}ap": metrics.ap,
            f"{prefix}cp_at_{metrics.k}": metrics.cp_at_k}


def run_metrics(result: TrainResult) -> dict[str, float]:
    """The run's single-valued metrics (see the module doc)."""
    values: dict[str, float] = {**_figures(result.metrics), **_split_metrics(result.split)}
    values["holdout_rows"] = len(result.holdout)
    for i, (metrics, summary) in enumerate(zip(result.fold_metrics, result.fold_splits,
                                               strict=True)):
        values.update(_figures(metrics, f"fold{i}_"))
        values.update(_split_metrics(summary, f"fold{i}_"))
    if result.fold_metrics:
        for name, (mean, std) in spread_of(result.fold_metrics).items():
            logged = f"cp_at_{result.config.k}" if name == "cp" else name
            values[f"folds_mean_{logged}"], values[f"folds_std_{logged}"] = mean, std
    calibration = result.calibration
    if calibration is not None:
        values.update({"brier": calibration.brier, "brier_raw": calibration.brier_raw,
                       "ece": calibration.ece, "ece_raw": calibration.ece_raw})
    for found in result.selection:
        prefix = f"selection_{found.family.replace('-', '_')}_"
        values.update({f"{prefix}trials": len(found.trials),
                       f"{prefix}completed": found.completed,
                       f"{prefix}seconds": found.seconds,
                       f"{prefix}best_value": found.best.value,
                       f"{prefix}best_std": found.best.std})
        values.update({f"{prefix}validation_{name}": value
                       for name, value in found.best.figure_means().items()})
    values.update({f"seconds_{step}": seconds for step, seconds in result.timings.items()})
    return {key: float(value) for key, value in values.items() if math.isfinite(float(value))}


def run_tags(result: TrainResult) -> dict[str, str]:
    """The run's tags; the fingerprint, feature set and code version also go on the version."""
    met = [name for name, ok in result.targets_met.items() if ok]
    return {
        **result.config.tags,
        TAG_DATA_FINGERPRINT: result.fingerprint.sha256,
        TAG_FEATURE_SET: result.feature_set.name,
        TAG_FEATURE_SET_VERSION: result.feature_set.version,
        TAG_CODE_VERSION: result.code_version,
        TAG_MODEL_KIND: result.config.model,
        TAG_TARGETS_MET: ",".join(met) if met else "none",
        **selection_tags(result),
    }


def selection_tags(result: TrainResult) -> dict[str, str]:
    """The registered version's lineage of its selection and calibration (see the module doc)."""
    tags: dict[str, str] = {}
    if result.calibration is not None:
        tags[TAG_CALIBRATION] = (f"{result.calibration.method} ({result.calibration.points} "
                                 f"points, {result.calibration.fit_rows} validation rows; "
                                 f"{result.calibration.reason})")
    if result.selection and result.config.selection is not None:
        found, selection = result.selection[0], result.config.selection
        means = found.best.figure_means()
        lineage = {
            "metric": selection.metric,
            "family": found.family,
            "trials": f"{len(found.trials)} ({found.completed} completed, stopped by "
                      f"{found.stopped_by}, {found.seconds:.0f} s)",
            "best_trial": str(found.best.number),
            "chosen_params": json.dumps(found.chosen_params, sort_keys=True),
            "fixed_params": json.dumps(found.fixed, sort_keys=True),
            "space": json.dumps(found.space.describe(), sort_keys=True),
            "validation_folds": "; ".join(found.validation_folds),
            "validation": ", ".join(f"{name.upper()} {means[name + '_mean']:.4f} +- "
                                    f"{means[name + '_std']:.4f}" for name in ("auc", "ap", "cp")),
        }
        tags.update({f"{TAG_SELECTION_PREFIX}{key}": value for key, value in lineage.items()})
    return {key: value[:_MAX_TAG] for key, value in tags.items()}


def trials_json(result: TrainResult) -> str:
    """``selection/trials.json``: every search and every trial with its fold figures."""
    data = [{"family": found.family, "stopped_by": found.stopped_by, "seconds": found.seconds,
             "fixed": found.fixed, "chosen_params": found.chosen_params,
             "best_trial": found.best.number, "validation_folds": list(found.validation_folds),
             "trials": [{"number": t.number, "state": t.state, "params": t.params,
                         "value": t.value, "std": t.std, "seconds": t.seconds,
                         "folds": [m.to_dict() for m in t.fold_metrics]}
                        for t in found.trials]}
            for found in result.selection]
    return json.dumps(data, indent=2, default=str) + "\n"


def evaluation_markdown(result: TrainResult) -> str:
    """``evaluation/table.md``: the split, our figures beside the published ones, per-day CP."""
    split = result.split
    lines = [
        f"# {result.config.model} on {result.feature_set.name} "
        f"(feature set version {result.feature_set.version})",
        "",
        f"Split: {split.config.describe()}.",
        f"Train {split.train_rows:,} rows ({split.train_fraud_rate:.2%} fraud); "
        f"test {split.test_rows:,} rows ({split.test_fraud_rate:.2%} fraud) after removing "
        f"{split.removed_known:,} rows of {split.known_cards:,} known-compromised cards.",
        f"Training data fingerprint: `{result.fingerprint.sha256}`.",
        "",
        comparison_markdown(result.comparison),
        f"Card precision@{result.metrics.k} per test day: "
        + ", ".join(f"{v:.2f}" for v in result.metrics.cp_per_day),
        "",
    ]
    if result.fold_metrics:
        lines += ["## Prequential folds", "", "| fold | test | AUC | AP | CP |",
                  "|---|---|---:|---:|---:|"]
        for i, (m, s) in enumerate(zip(result.fold_metrics, result.fold_splits, strict=True)):
            lines.append(f"| {i} | {s.config.test_start}.. | {m.auc:.3f} | {m.ap:.3f} "
                         f"| {m.cp_at_k:.3f} |")
        lines.append("")
    return "\n".join(lines)


def metrics_json(result: TrainResult) -> str:
    """``evaluation/metrics.json``: full figures including per-day CP and folds."""
    data = {"metrics": result.metrics.to_dict(),
            "folds": [m.to_dict() for m in result.fold_metrics],
            "targets_met": result.targets_met,
            "fingerprint": result.fingerprint.to_dict(),
            "timings_s": result.timings}
    return json.dumps(data, indent=2, default=str) + "\n"


class TrainingRun:
    """One MLflow run of the pipeline: opened, logged, registered from, then closed.

    Used as a context manager: leaving it normally marks the run FINISHED, an
    exception marks it FAILED, so a crashed training never looks complete.
    """

    def __init__(self, tracking_uri: str, experiment: str, run_name: str) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = (found.experiment_id if found is not None
                         else self.client.create_experiment(experiment))
        run = self.client.create_run(experiment_id, run_name=run_name)
        self.experiment_id = str(experiment_id)
        self.run_id: str = run.info.run_id
        self.artifact_uri: str = str(run.info.artifact_uri)

    @property
    def url(self) -> str:
        """The run's page in the MLflow UI (for a server), else how to open one on the store."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return (f"`mlflow ui --backend-store-uri {self.tracking_uri}`, then experiment "
                    f"{self.experiment_id}, run {self.run_id}")
        return (f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id}"
                f"/runs/{self.run_id}")

    def __enter__(self) -> TrainingRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.client.set_terminated(self.run_id, "FAILED" if kind is not None else "FINISHED")

    def log(self, result: TrainResult) -> None:
        """Params, metrics, tags and artifacts of ``result`` (see the module doc)."""
        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, 0) for key, value in run_metrics(result).items()]
        k = result.metrics.k
        metrics += [Metric(f"cp_at_{k}_day", value, now, step)
                    for step, value in enumerate(result.metrics.cp_per_day)]
        params = [Param(key, value) for key, value in run_params(result).items()]
        tags = [RunTag(key, value) for key, value in run_tags(result).items()]
        for start in range(0, max(len(metrics), len(params), len(tags)), 100):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 100],
                                  params=params[start:start + 100], tags=tags[start:start + 100])
        with tempfile.TemporaryDirectory(prefix="rtml-train-") as tmp:
            root = Path(tmp)
            files = {
                REFERENCE_ARTIFACT: result.reference.to_json(),
                TABLE_ARTIFACT: evaluation_markdown(result),
                METRICS_ARTIFACT: metrics_json(result),
            }
            if result.calibration is not None:
                files[RELIABILITY_ARTIFACT] = json.dumps(result.calibration.to_dict(),
                                                         indent=2) + "\n"
            if result.selection:
                files[TRIALS_ARTIFACT] = trials_json(result)
                files[SPACE_ARTIFACT] = json.dumps(
                    {found.family: found.space.describe() for found in result.selection},
                    indent=2) + "\n"
            for name, text in files.items():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_text(text)
            (root / HOLDOUT_ARTIFACT).parent.mkdir(parents=True, exist_ok=True)
            result.holdout.to_parquet(root / HOLDOUT_ARTIFACT, index=False)
            self.client.log_artifacts(self.run_id, str(root))
        self.log_trials(result)

    def log_trials(self, result: TrainResult) -> None:
        """One child run per selection trial (see the module doc)."""
        now = int(time.time() * 1000)
        ends = {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}
        for found in result.selection:
            for trial in found.trials:
                child = self.client.create_run(
                    self.experiment_id, run_name=f"{found.family}-trial-{trial.number:03d}",
                    tags={TAG_PARENT_RUN: self.run_id,
                          f"{TAG_SELECTION_PREFIX}family": found.family,
                          f"{TAG_SELECTION_PREFIX}state": trial.state,
                          f"{TAG_SELECTION_PREFIX}best": str(trial is found.best).lower()})
                values: dict[str, float] = {"value": trial.value, "std": trial.std,
                                            "seconds": trial.seconds,
                                            **trial.figure_means()}
                for i, metrics in enumerate(trial.fold_metrics):
                    values.update(_figures(metrics, f"fold{i}_"))
                metrics_ = [Metric(key, float(v), now, 0) for key, v in values.items()
                            if math.isfinite(float(v))]
                params = [Param(key, str(v)[:_MAX_PARAM]) for key, v in
                          {**found.fixed, **trial.params}.items()]
                self.client.log_batch(child.info.run_id, metrics=metrics_, params=params)
                self.client.set_terminated(child.info.run_id, ends[trial.state])

    def register(self, result: TrainResult) -> ModelVersion:
        """Register the model as a new version of ``config.name``, linked to this run."""
        registry = MlflowRegistry(self.tracking_uri)
        tags = {**result.config.tags,
                TAG_DATA_FINGERPRINT: result.fingerprint.sha256,
                TAG_CODE_VERSION: result.code_version,
                TAG_MODEL_KIND: result.config.model,
                **selection_tags(result)}
        m = result.metrics
        description = (f"{result.config.model} on {result.feature_set.name} "
                       f"{result.feature_set.version}, {result.config.split.describe()}: "
                       f"AUC {m.auc:.3f}, AP {m.ap:.3f}, CP@{m.k} {m.cp_at_k:.3f}")
        return registry.register(result.config.name, result.model, feature_set=result.feature_set,
                                 run_id=self.run_id, tags=tags, description=description)
