"""The training pipeline: data set -> features -> split -> fit -> evaluate -> MLflow -> registry.

``train(config, progress)`` runs the steps of :data:`STEPS` in order:

1. **load** the simulator data set (:mod:`rtml_simulator.frames`), or take a
   :class:`~rtml_simulator.frames.Dataset` already in memory (the retrain
   worker builds one from its archive of the streams);
2. **features**: the batch engine computes the feature set, point-in-time
   correct, for the rows of the evaluated periods (earlier history feeds the
   windows; rows after the test period are never read);
3. **split** into train / delay / test with known-compromised cards removed
   (:mod:`rtml_training.split`), plus earlier prequential folds if asked;
4. **fit** XGBoost or River on the training rows;
5. **evaluate** on the test rows: AUC, AP, card precision@k, compared with
   the published results;
6. **folds**: fit and evaluate again on each earlier fold (only with folds);
7. **reference** distributions of the training features and scores (drift);
8. **fingerprint** the training data;
9. **log** the run to MLflow and 10. **register** the model (only with a
   tracking URI; registration can be turned off).

Scores always come from the :class:`rtml_models.base.ScoringModel` wrapper
that is registered, so the evaluated model is the served model. Progress goes
to a small callback protocol (:class:`Progress`) so the pipeline runs the
same under the CLI's spinner and in tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from rtml_features.baseline import get_feature_set
from rtml_features.batch import compute_features
from rtml_features.definitions import FeatureSet
from rtml_models.base import ScoringModel
from rtml_models.river import RiverModel
from rtml_models.xgboost import XGBoostModel
from rtml_monitoring.reference import build_reference
from rtml_simulator.frames import Dataset, load_dataset
from rtml_training.config import TrainConfig
from rtml_training.fingerprint import fingerprint
from rtml_training.metrics import Metrics, evaluate, mean_of
from rtml_training.mlflow_logging import TrainingRun, check_server, code_version
from rtml_training.published import comparison_rows
from rtml_training.result import SplitSummary, TrainResult
from rtml_training.river_trainer import train_river
from rtml_training.split import Split, SplitError, make_split, period_bounds
from rtml_training.xgb_trainer import train_xgboost, xgb_params

#: Step key -> what it does (the CLI's progress lines).
STEPS: dict[str, str] = {
    "load": "load the data set",
    "features": "compute features (batch engine)",
    "split": "split train / delay / test",
    "fit": "fit the model",
    "evaluate": "evaluate on the test period",
    "folds": "prequential folds",
    "reference": "reference distributions",
    "fingerprint": "fingerprint the training data",
    "log": "log the run to MLflow",
    "register": "register the model",
}


class Progress(Protocol):
    """Told when each step starts and ends (with a one-line summary of what it found)."""

    def step_started(self, step: str) -> None: ...

    def step_finished(self, step: str, seconds: float, detail: str) -> None: ...


class NullProgress:
    """Progress that goes nowhere."""

    def step_started(self, step: str) -> None:
        pass

    def step_finished(self, step: str, seconds: float, detail: str) -> None:
        pass


@dataclass
class _Note:
    detail: str = ""


class _Steps:
    """Times each step and reports it."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, step: str) -> Iterator[_Note]:
        self.progress.step_started(step)
        note = _Note()
        started = time.perf_counter()
        yield note
        seconds = time.perf_counter() - started
        self.timings[step] = seconds
        self.progress.step_finished(step, seconds, note.detail)


def feature_frame(dataset: Dataset, feature_set: FeatureSet, config: TrainConfig) -> pd.DataFrame:
    """Features of the rows every split reads, with ``is_fraud`` and ``day`` carried along.

    Only those rows are the engine's spine (~200k of 1.75M on the default
    data); the history given to the engine stops at the end of the test
    period, so nothing later can leak into a feature.
    """
    first, end = period_bounds(config.split, config.n_folds)
    times = dataset.history["event_time"]
    in_period = ((times >= first) & (times < end)).to_numpy()
    if not in_period.any():
        raise SplitError(f"no transactions in {first.date()}..{(end - pd.Timedelta(days=1)).date()}"
                         f" ({config.split.describe()}); the data covers "
                         f"{dataset.day.min().date()}..{dataset.day.max().date()}")
    before_end = (times < end).to_numpy()
    spine = dataset.history[in_period].assign(is_fraud=dataset.is_fraud[in_period],
                                              day=dataset.day[in_period])
    return compute_features(feature_set, spine, dataset.history[before_end],
                            dataset.labels[before_end])


def rows(frame: pd.DataFrame, feature_set: FeatureSet) -> npt.NDArray[np.float64]:
    """The model input: feature columns in the feature set's order."""
    return frame[feature_set.names].to_numpy(dtype=np.float64)


def fit_model(config: TrainConfig, frame: pd.DataFrame,
              feature_set: FeatureSet) -> tuple[ScoringModel, dict[str, Any]]:
    """The fitted model (as the servable wrapper) and the parameters it was fitted with."""
    if config.model == "xgboost":
        params = xgb_params(config.xgb_params)
        return XGBoostModel(train_xgboost(frame, feature_set.names, params=params)), params
    estimator = train_river(frame, feature_set.names)
    model = RiverModel(estimator, feature_set.names, updates=len(frame))
    return model, {"estimator": " | ".join(type(step).__name__
                                           for step in getattr(estimator, "steps", {}).values())
                   or type(estimator).__name__}


def fit_and_evaluate(config: TrainConfig, frame: pd.DataFrame, split: Split,
                     feature_set: FeatureSet) -> tuple[ScoringModel, dict[str, Any], Metrics]:
    """Fit on the split's training rows and evaluate on its test rows."""
    model, params = fit_model(config, frame.iloc[split.train], feature_set)
    test = frame.iloc[split.test]
    return model, params, evaluate(test, model.predict(rows(test, feature_set)), config.k)


def holdout_sample(test: pd.DataFrame, feature_set: FeatureSet, size: int,
                   seed: int) -> pd.DataFrame:
    """A uniform, seeded sample of test rows: features in order, ``is_fraud``, ``transaction_id``.

    Uniform so it looks like live traffic (the gate measures latency and
    sanity-checks scores on it); it is never used to fit or select a model.
    """
    sample = test.sample(n=min(size, len(test)), random_state=seed).sort_values("event_time")
    holdout = sample[feature_set.names].astype(np.float64).reset_index(drop=True)
    holdout["is_fraud"] = sample["is_fraud"].to_numpy(dtype=bool)
    holdout["transaction_id"] = sample["transaction_id"].to_numpy()
    return holdout


def _metrics_line(m: Metrics) -> str:
    return f"AUC {m.auc:.3f}, AP {m.ap:.3f}, CP@{m.k} {m.cp_at_k:.3f}"


def train(config: TrainConfig, progress: Progress | None = None,
          dataset: Dataset | None = None) -> TrainResult:
    """Run the pipeline (see the module doc); raises on the first failing step.

    ``dataset`` replaces reading ``config.data`` (which is then only recorded as
    the data's origin): callers holding the frames already, such as the retrain
    worker, train on them without a round trip through a Parquet file.
    """
    steps = _Steps(progress or NullProgress())
    feature_set = get_feature_set(config.feature_set)
    if config.tracking_uri:
        check_server(config.tracking_uri)  # fail before the work, not after it

    with steps("load") as note:
        if dataset is None:
            dataset = load_dataset(config.data)
        note.detail = (f"{len(dataset):,} transactions, "
                       f"{dataset.day.min().date()}..{dataset.day.max().date()}")
    with steps("features") as note:
        frame = feature_frame(dataset, feature_set, config)
        note.detail = (f"{len(frame):,} rows x {len(feature_set.names)} features "
                       f"({feature_set.name} {feature_set.version})")
    with steps("split") as note:
        splits = [make_split(frame, config.split.fold(k)) for k in range(config.n_folds)]
        main = splits[0]
        summary = SplitSummary.of(main, frame)
        note.detail = (f"{config.split.describe()}: train {summary.train_rows:,} rows "
                       f"({summary.train_fraud_rate:.2%} fraud), test {summary.test_rows:,} rows "
                       f"({summary.test_fraud_rate:.2%} fraud), {summary.removed_known:,} rows "
                       f"of known-compromised cards removed")
    train_frame, test_frame = frame.iloc[main.train], frame.iloc[main.test]
    with steps("fit") as note:
        model, params = fit_model(config, train_frame, feature_set)
        note.detail = f"{config.model} on {len(train_frame):,} rows"
    with steps("evaluate") as note:
        metrics = evaluate(test_frame, model.predict(rows(test_frame, feature_set)), config.k)
        note.detail = _metrics_line(metrics)
    fold_metrics: tuple[Metrics, ...] = ()
    fold_splits: tuple[SplitSummary, ...] = ()
    if config.folds > 1:
        with steps("folds") as note:
            others = [fit_and_evaluate(config, frame, split, feature_set)[2]
                      for split in splits[1:]]
            fold_metrics = (metrics, *others)
            fold_splits = tuple(SplitSummary.of(split, frame) for split in splits)
            note.detail = f"{len(fold_metrics)} folds, mean {_metrics_line(mean_of(fold_metrics))}"
    with steps("reference") as note:
        reference = build_reference(
            train_frame, feature_set.names, model.predict(rows(train_frame, feature_set)),
            bins=config.bins, feature_set=feature_set.name,
            feature_set_version=feature_set.version,
            metadata={"model": config.model, "rows": len(train_frame),
                      "split": config.split.describe()})
        note.detail = f"{len(reference.features)} features + score, up to {config.bins} bins"
    with steps("fingerprint") as note:
        fp = fingerprint(train_frame, feature_set.names)
        note.detail = f"sha256 {fp.sha256[:16]}... over {fp.n_rows:,} rows"

    ours: list[tuple[str, Metrics, str]] = [(config.model, metrics, "")]
    if fold_metrics:
        ours.append((f"{config.model}, mean of {len(fold_metrics)} folds", mean_of(fold_metrics),
                     "prequential folds, no model selection"))
    result = TrainResult(
        config=config, feature_set=feature_set, model=model, model_params=params,
        metrics=metrics, split=summary, fold_metrics=fold_metrics, fold_splits=fold_splits,
        reference=reference, fingerprint=fp, comparison=tuple(comparison_rows(ours)),
        holdout=holdout_sample(test_frame, feature_set, config.holdout_rows, config.seed),
        timings=dict(steps.timings), code_version=code_version(),
    )
    if not config.tracking_uri:
        return result

    version = None
    run_name = config.run_name or f"{config.model}-{config.split.train_start}"
    with TrainingRun(config.tracking_uri, config.experiment_name, run_name) as run:
        with steps("log") as note:
            run.log(result)
            note.detail = f"run {run.run_id} in experiment {config.experiment_name!r}"
        if config.register:
            with steps("register") as note:
                version = run.register(result)
                note.detail = f"{version.name} version {version.version}"
    return replace(result, run_id=run.run_id, run_url=run.url, model_version=version,
                   timings=dict(steps.timings))
