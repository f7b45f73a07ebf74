"""The training pipeline: data set -> features -> split -> fit -> evaluate -> MLflow -> registry.

``train(config, progress)`` runs the steps of :data:`STEPS` in order:

1. **load** the simulator data set (:mod:`rtml_simulator.frames`), or take a
   :class:`~rtml_simulator.frames.Dataset` already in memory (the retrain
   worker builds one from its archive of the streams);
2. **features**: the batch engine computes the feature set, point-in-time
   correct, for the rows of the evaluated periods (earlier history feeds the
   windows; rows after the test period are never read);
3. **split** into train / delay / test with known-compromised cards removed
   (:mod:`rtml_training.split`), plus earlier prequential folds if asked, plus
   the validation folds of model selection and calibration (moved back so
   their validation weeks end where training starts);
4. **select** (only with a selection): a seeded search over the validation
   folds (:mod:`rtml_training.selection`), plus the comparison families;
5. **fit** XGBoost or River on the training rows (chosen parameters);
6. **calibrate**: a Platt or isotonic map fitted on the chosen
   configuration's validation scores, attached to the model so every serving
   path applies it;
7. **evaluate** on the test rows: AUC, AP, card precision@k, compared with
   the published results; Brier score and reliability raw vs calibrated;
8. **compare** (only with comparison families): each refitted with its chosen
   parameters on the training rows and evaluated on the test rows;
9. **folds**: fit and evaluate again on each earlier fold (only with folds);
10. **reference** distributions of the training features and (calibrated) scores;
11. **fingerprint** the training data;
12. **log** the run to MLflow (trials as child runs) and 13. **register** the
    model (only with a tracking URI; registration can be turned off).

Scores always come from the :class:`rtml_models.base.ScoringModel` wrapper
that is registered, so the evaluated model is the served model. Progress goes
to a small callback protocol (:class:`Progress`) so the pipeline runs the
same under the CLI's spinner and in tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from rtml_features.baseline import get_feature_set
from rtml_features.batch import compute_features
from rtml_features.definitions import FeatureSet
from rtml_models.base import ScoringModel
from rtml_models.calibration import Calibration, fit_isotonic, fit_platt
from rtml_models.river import RiverModel
from rtml_models.xgboost import XGBoostModel
from rtml_monitoring.reference import build_reference
from rtml_simulator.frames import Dataset, load_dataset
from rtml_training.calibration_report import CalibrationReport, calibration_report
from rtml_training.config import TrainConfig
from rtml_training.fingerprint import fingerprint
from rtml_training.metrics import Metrics, evaluate, mean_of
from rtml_training.mlflow_logging import TrainingRun, check_server, code_version
from rtml_training.params import river_params, xgboost_params
from rtml_training.published import comparison_rows
from rtml_training.result import SplitSummary, TrainResult
from rtml_training.river_trainer import train_river
from rtml_training.selection.families import get_family
from rtml_training.selection.search import SearchResult, search
from rtml_training.split import Split, SplitConfig, SplitError, make_split, period_bounds
from rtml_training.xgb_trainer import train_xgboost

#: Step key -> what it does (the CLI's progress lines).
STEPS: dict[str, str] = {
    "load": "load the data set",
    "features": "compute features (batch engine)",
    "split": "split train / delay / test",
    "select": "model selection (prequential validation)",
    "fit": "fit the model",
    "calibrate": "calibrate scores on validation weeks",
    "evaluate": "evaluate on the test period",
    "compare": "comparison families on the test period",
    "folds": "prequential folds",
    "reference": "reference distributions",
    "fingerprint": "fingerprint the training data",
    "log": "log the run to MLflow",
    "register": "register the model",
}


class Progress(Protocol):
    """Told when each step starts and ends (with a one-line summary of what it found).

    A progress object may also have ``step_advanced(step, detail)``: long
    steps (the selection's trials) call it with a running summary and an ETA.
    """

    def step_started(self, step: str) -> None: ...

    def step_finished(self, step: str, seconds: float, detail: str) -> None: ...


class NullProgress:
    """Progress that goes nowhere."""

    def step_started(self, step: str) -> None:
        pass

    def step_finished(self, step: str, seconds: float, detail: str) -> None:
        pass

    def step_advanced(self, step: str, detail: str) -> None:
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

    def advance(self, step: str, detail: str) -> None:
        advanced = getattr(self.progress, "step_advanced", None)
        if advanced is not None:
            advanced(step, detail)


def feature_frame(dataset: Dataset, feature_set: FeatureSet, config: TrainConfig,
                  others: Sequence[SplitConfig] = ()) -> pd.DataFrame:
    """Features of the rows every split reads, with ``is_fraud`` and ``day`` carried along.

    Only those rows are the engine's spine (~200k of 1.75M on the default
    data); the history given to the engine stops at the end of the test
    period, so nothing later can leak into a feature.
    """
    first, end = period_bounds(config.split, config.n_folds, others)
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


def fit_model(config: TrainConfig, frame: pd.DataFrame, feature_set: FeatureSet,
              params: Mapping[str, Any] | None = None) -> tuple[ScoringModel, dict[str, Any]]:
    """The fitted model (as the servable wrapper) and the parameters it was fitted with.

    ``params`` (default: the config's own for the model kind) go on top of the
    kind's written-down defaults (:mod:`rtml_training.params`).
    """
    given = config.model_params if params is None else dict(params)
    if config.model == "xgboost":
        full = xgboost_params({"random_state": config.seed, **given})
        return XGBoostModel(train_xgboost(frame, feature_set.names, params=full)), full
    full = river_params(given)
    estimator = train_river(frame, feature_set.names, params=full)
    model = RiverModel(estimator, feature_set.names, updates=len(frame))
    return model, {**full, "estimator": " | ".join(
        type(step).__name__ for step in getattr(estimator, "steps", {}).values())
        or type(estimator).__name__}


def fit_and_evaluate(config: TrainConfig, frame: pd.DataFrame, split: Split,
                     feature_set: FeatureSet, params: Mapping[str, Any] | None = None,
                     ) -> tuple[ScoringModel, dict[str, Any], Metrics]:
    """Fit on the split's training rows and evaluate on its test rows."""
    model, used = fit_model(config, frame.iloc[split.train], feature_set, params)
    test = frame.iloc[split.test]
    return model, used, evaluate(test, model.predict(rows(test, feature_set)), config.k)


#: Relative cross-fitted Brier improvement ``auto`` needs before it keeps a map.
MIN_BRIER_GAIN = 0.01


@dataclass(frozen=True)
class CalibrationChoice:
    """The map kept (None: raw scores kept), the validation rows it rests on, and why."""

    calibration: Calibration | None
    rows: int
    reason: str


def _brier(scores: npt.NDArray[np.float64], labels: npt.NDArray[np.int8]) -> float:
    return float(np.sum((scores - labels) ** 2))


def fit_calibration(config: TrainConfig, frame: pd.DataFrame, splits: Sequence[Split],
                    feature_set: FeatureSet, params: Mapping[str, Any]) -> CalibrationChoice:
    """The calibration of ``params``' configuration, fitted on validation weeks.

    Never on training rows (a model's scores on its own training rows are
    overconfident) nor on the test period: the configuration is refitted on
    each validation fold, and the map is fitted on the pooled scores of the
    validation weeks against their labels.

    ``auto`` keeps a Platt map only where it helps: it needs two or more
    folds (else the raw scores are kept); each fold's scores are mapped by a
    Platt map fitted on the *other* folds (cross-fitting, so the comparison
    is out of sample), and the summed Brier score of the mapped scores must
    beat the raw scores' by :data:`MIN_BRIER_GAIN` (a smaller gain is noise
    between weeks: measured, a 0.1 % validation gain came with a 3 % loss on
    the test weeks); otherwise the raw scores are kept as they are — already
    calibrated, which the test report then shows. ``platt`` and
    ``isotonic`` always fit their map.
    """
    family = get_family(config.model)
    scores, labels = [], []
    for split in splits:
        scored = frame.iloc[split.test]
        scores.append(family.fit_score(frame.iloc[split.train], scored, feature_set.names,
                                       params, config.seed))
        labels.append(scored["is_fraud"].to_numpy(dtype=np.int8))
    pooled, truth = np.concatenate(scores), np.concatenate(labels)
    if config.calibration == "isotonic":
        return CalibrationChoice(fit_isotonic(pooled, truth), len(pooled), "asked for")
    if config.calibration == "platt":
        return CalibrationChoice(fit_platt(pooled, truth), len(pooled), "asked for")
    if len(splits) < 2:
        return CalibrationChoice(None, len(pooled), "raw scores kept: one validation fold "
                                                    "cannot check a map out of sample")
    raw = mapped = 0.0
    for held in range(len(splits)):
        others = [i for i in range(len(splits)) if i != held]
        fold_map = fit_platt(np.concatenate([scores[i] for i in others]),
                             np.concatenate([labels[i] for i in others]))
        raw += _brier(scores[held], labels[held])
        mapped += _brier(fold_map.apply(scores[held]), labels[held])
    n = len(pooled)
    if mapped < raw * (1 - MIN_BRIER_GAIN):
        return CalibrationChoice(fit_platt(pooled, truth), n,
                                 f"cross-fitted Brier {mapped / n:.6f} < raw {raw / n:.6f}")
    return CalibrationChoice(None, n, f"raw scores kept: cross-fitted Platt Brier "
                                      f"{mapped / n:.6f}, raw {raw / n:.6f}")


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


def _validation_splits(frame: pd.DataFrame, configs: Sequence[SplitConfig],
                       first_day: date) -> tuple[list[Split], list[str]]:
    """The validation folds that fit the data, and why the others do not.

    A data set that starts late (the retrain worker's archive keeps a few
    weeks) may hold fewer validation weeks than asked: selection and
    calibration use those there are, and a run without any is calibrated
    not at all rather than failed (a selection without any fails: it has
    nothing to select on). A fold whose training week starts before the
    data does not count: a model fitted on part of a week would misjudge
    the configuration it stands for.
    """
    found: list[Split] = []
    missing: list[str] = []
    for config in configs:
        if config.train_start < first_day:
            missing.append(f"validation fold {config.describe()} starts before the data "
                           f"({first_day})")
            continue
        try:
            found.append(make_split(frame, config))
        except SplitError as exc:
            missing.append(str(exc))
    return found, missing


def _validation_note(config: TrainConfig, found: SearchResult) -> str:
    """'validation AP 0.702 +- 0.031 over 4 folds, 40 trials' for the comparison table."""
    assert config.selection is not None
    best = found.best
    return (f"validation {config.selection.metric_label(config.k)} {best.value:.3f} "
            f"+- {best.std:.3f} over {len(best.fold_metrics)} folds, "
            f"{len(found.trials)} trials")


def _search_line(config: TrainConfig, found: SearchResult) -> str:
    assert config.selection is not None
    return (f"{found.family}: best {config.selection.metric_label(config.k)} "
            f"{found.best.value:.3f} (trial {found.best.number} of {len(found.trials)}, "
            f"{sum(t.state == 'pruned' for t in found.trials)} pruned, stopped by "
            f"{found.stopped_by}, {found.seconds:.0f} s)")


def _select(config: TrainConfig, frame: pd.DataFrame, validation: Sequence[Split],
            feature_set: FeatureSet, steps: _Steps) -> list[SearchResult]:
    """The model's own family first (the one registered), then the comparison families."""
    selection = config.selection
    assert selection is not None
    found: list[SearchResult] = []
    for name in (config.model, *[f for f in selection.compare if f != config.model]):
        family = get_family(name)
        fixed = config.model_params if name == config.model else {}

        def told(family_name: str, done: int, bound: int, best: float, eta_s: float) -> None:
            filled = round(20 * done / bound)
            steps.advance("select", f"{family_name} [{'#' * filled}{'.' * (20 - filled)}] "
                                    f"trial {done}/{bound}, best "
                                    f"{selection.metric_label(config.k)} {best:.3f}, "
                                    f"ETA {eta_s // 60:.0f} min {eta_s % 60:02.0f} s")

        found.append(search(family, frame, validation, feature_set.names, selection,
                            k=config.k, fixed=fixed, seed=config.seed, on_trial=told))
    return found


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
    validation_configs = [config.split.validation().fold(k)
                          for k in range(config.validation_folds)]
    with steps("features") as note:
        frame = feature_frame(dataset, feature_set, config, validation_configs)
        note.detail = (f"{len(frame):,} rows x {len(feature_set.names)} features "
                       f"({feature_set.name} {feature_set.version})")
    with steps("split") as note:
        splits = [make_split(frame, config.split.fold(k)) for k in range(config.n_folds)]
        validation, missing = _validation_splits(frame, validation_configs,
                                                 dataset.day.min().date())
        main = splits[0]
        summary = SplitSummary.of(main, frame)
        note.detail = (f"{config.split.describe()}: train {summary.train_rows:,} rows "
                       f"({summary.train_fraud_rate:.2%} fraud), test {summary.test_rows:,} rows "
                       f"({summary.test_fraud_rate:.2%} fraud), {summary.removed_known:,} rows "
                       f"of known-compromised cards removed")
        if validation:
            note.detail += (f"; {len(validation)} validation fold(s), weeks from "
                            f"{validation[-1].config.test_start} to "
                            f"{validation[0].config.test_last_day}")
        if missing:
            note.detail += f"; {len(missing)} validation fold(s) not in the data"
        if config.selection is not None and not validation:
            raise SplitError(f"model selection needs validation weeks before the training "
                             f"period: {missing[0]}")
    train_frame, test_frame = frame.iloc[main.train], frame.iloc[main.test]
    searches: tuple[SearchResult, ...] = ()
    chosen = config.model_params
    if config.selection is not None:
        with steps("select") as note:
            searches = tuple(_select(config, frame, validation, feature_set, steps))
            chosen = searches[0].chosen_params
            note.detail = "; ".join(_search_line(config, found) for found in searches)
    with steps("fit") as note:
        model, params = fit_model(config, train_frame, feature_set, chosen)
        note.detail = f"{config.model} on {len(train_frame):,} rows"
    choice: CalibrationChoice | None = None
    if config.calibration_method != "none" and validation:
        with steps("calibrate") as note:
            choice = fit_calibration(config, frame, validation, feature_set, chosen)
            if choice.calibration is not None:
                model = model.with_calibration(choice.calibration)
                note.detail = (f"{choice.calibration.method} ({choice.calibration.points} "
                               f"points) on {choice.rows:,} validation rows ({choice.reason})")
            else:
                note.detail = f"none on {choice.rows:,} validation rows: {choice.reason}"
    with steps("evaluate") as note:
        test_rows = rows(test_frame, feature_set)
        scores = model.predict(test_rows)
        metrics = evaluate(test_frame, scores, config.k)
        note.detail = _metrics_line(metrics)
        calibrated: CalibrationReport | None = None
        if choice is not None:
            kept = model.calibration
            calibrated = calibration_report(
                kept.method if kept is not None else "none",
                kept.points if kept is not None else 0, choice.reason,
                "; ".join(split.config.describe() for split in validation), choice.rows,
                model.predict_raw(test_rows), scores, test_frame["is_fraud"].to_numpy())
            note.detail += (f"; Brier {calibrated.brier_raw:.5f} raw -> {calibrated.brier:.5f} "
                            f"calibrated")
    compared: list[tuple[str, Metrics, str]] = []
    if len(searches) > 1:
        with steps("compare") as note:
            for found in searches[1:]:
                family = get_family(found.family)
                family_scores = family.fit_score(train_frame, test_frame, feature_set.names,
                                                 found.chosen_params, config.seed)
                compared.append((f"{family.title}, selected",
                                 evaluate(test_frame, family_scores, config.k),
                                 _validation_note(config, found)))
            note.detail = "; ".join(f"{label}: {_metrics_line(m)}" for label, m, _ in compared)
    fold_metrics: tuple[Metrics, ...] = ()
    fold_splits: tuple[SplitSummary, ...] = ()
    if config.folds > 1:
        with steps("folds") as note:
            others = [fit_and_evaluate(config, frame, split, feature_set, chosen)[2]
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
                      "split": config.split.describe()},
            categorical=feature_set.category_codes)
        note.detail = f"{len(reference.features)} features + score, up to {config.bins} bins"
    with steps("fingerprint") as note:
        fp = fingerprint(train_frame, feature_set.names)
        note.detail = f"sha256 {fp.sha256[:16]}... over {fp.n_rows:,} rows"

    label = config.model + (", selected" if searches else "")
    ours: list[tuple[str, Metrics, str]] = [
        (label, metrics, _validation_note(config, searches[0]) if searches else "")]
    ours += compared
    if fold_metrics:
        ours.append((f"{config.model}, mean of {len(fold_metrics)} folds", mean_of(fold_metrics),
                     "prequential folds, the same parameters"))
    result = TrainResult(
        config=config, feature_set=feature_set, model=model, model_params=params,
        metrics=metrics, split=summary, fold_metrics=fold_metrics, fold_splits=fold_splits,
        reference=reference, fingerprint=fp, comparison=tuple(comparison_rows(ours)),
        holdout=holdout_sample(test_frame, feature_set, config.holdout_rows, config.seed),
        timings=dict(steps.timings), code_version=code_version(),
        selection=searches, calibration=calibrated,
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
