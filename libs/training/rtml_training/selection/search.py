"""The search: a seeded Optuna study over prequential validation folds.

Each trial fits the family with one configuration on every validation fold
(:meth:`rtml_training.split.SplitConfig.validation` and its earlier folds),
scores the fold's validation week and takes the mean of the declared metric
(AP by default; AUC or card precision@k possible) — the reference handbook's
model-selection protocol. The test period is never read here.

Bounded twice: at most ``trials`` trials and no new trial after ``timeout_s``.
The first trial is the family's defaults (with the user's fixed parameters),
so a search never chooses something worse on validation than not searching.
A median pruner stops a trial after a fold when its running mean is below the
median of earlier trials at the same fold, which roughly halves the cost of
bad regions. The TPE sampler is seeded: with the trial bound reached (not the
timeout), the same data gives the same trials and the same choice.

>>> SelectionConfig(metric="cp").metric_label(100)
'CP@100'
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import optuna
import pandas as pd

from rtml_training.metrics import Metrics, evaluate, figure, spread_of
from rtml_training.selection.families import Family
from rtml_training.selection.space import SearchSpace
from rtml_training.split import Split

MetricName = Literal["ap", "auc", "cp"]
METRICS: tuple[str, ...] = get_args(MetricName)
TrialState = Literal["complete", "pruned", "failed"]


@dataclass(frozen=True)
class SelectionConfig:
    """How a selection searches (see the module doc); logged with the run."""

    metric: MetricName = "ap"
    #: Trials per searched family (the first one is the defaults). 100: on the default data
    #: about half are pruned and a search takes 3-5 minutes on 2 cores, inside the
    #: 10-minute budget (40 used a fifth of it).
    trials: int = 100
    #: No new trial starts after this many seconds (per family).
    timeout_s: float = 480.0
    #: Prequential validation folds each trial is fitted and scored on.
    folds: int = 4
    #: Families searched only for the comparison table (never registered).
    compare: tuple[str, ...] = ()
    #: Stop a trial early when it trails the median of earlier ones at the same fold.
    prune: bool = True

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.trials < 1 or self.folds < 1 or self.timeout_s <= 0:
            raise ValueError("trials and folds must be >= 1 and timeout_s > 0")

    def metric_label(self, k: int) -> str:
        return {"ap": "AP", "auc": "AUC"}.get(self.metric, f"CP@{k}")


@dataclass(frozen=True)
class Trial:
    """One configuration tried: its parameters and its validation figures per fold."""

    family: str
    number: int
    params: dict[str, Any]
    fold_metrics: tuple[Metrics, ...]
    #: The declared metric (``ap``, ``auc`` or ``cp``) the search maximises.
    metric: str
    seconds: float
    state: TrialState

    @property
    def value(self) -> float:
        """Mean of the declared metric over the folds scored (all folds unless pruned)."""
        return spread_of(self.fold_metrics)[self.metric][0]

    @property
    def std(self) -> float:
        """Its spread (population standard deviation) over the same folds."""
        return spread_of(self.fold_metrics)[self.metric][1]

    def figure_means(self) -> dict[str, float]:
        """Mean and spread of AUC, AP and CP over the folds scored (``auc_mean``, ``auc_std``
        ...), as MLflow child runs and the version's lineage record them."""
        out: dict[str, float] = {}
        for name, (mean, std) in spread_of(self.fold_metrics).items():
            out[f"{name}_mean"], out[f"{name}_std"] = mean, std
        return out


@dataclass(frozen=True)
class SearchResult:
    """A family's search: every trial, the best one and why the search stopped."""

    family: str
    config: SelectionConfig
    space: SearchSpace
    #: Parameters the user fixed (not searched; part of every trial's configuration).
    fixed: dict[str, Any]
    trials: tuple[Trial, ...]
    best: Trial
    seconds: float
    stopped_by: Literal["trials", "timeout"]
    validation_folds: tuple[str, ...] = field(default_factory=tuple)

    @property
    def chosen_params(self) -> dict[str, Any]:
        """The configuration to retrain: fixed parameters plus the best trial's."""
        return {**self.fixed, **self.best.params}

    @property
    def completed(self) -> int:
        return sum(t.state == "complete" for t in self.trials)


#: Told after each trial: (family, trials done, trials bound, best value, seconds left estimate).
OnTrial = Callable[[str, int, int, float, float], None]


def _eta(done: int, bound: int, started: float, timeout_s: float) -> float:
    """Seconds left: the trials still to run at the mean pace so far, capped by the timeout."""
    elapsed = time.perf_counter() - started
    per_trial = elapsed / done if done else 0.0
    return max(0.0, min((bound - done) * per_trial, timeout_s - elapsed))


def search(family: Family, frame: pd.DataFrame, splits: Sequence[Split],
           feature_names: Sequence[str], config: SelectionConfig, *, k: int = 100,
           fixed: Mapping[str, Any] | None = None, seed: int = 0,
           on_trial: OnTrial | None = None) -> SearchResult:
    """Search ``family``'s space (minus ``fixed``) on the validation ``splits`` of ``frame``."""
    fixed = dict(fixed or {})
    space = family.space.without(fixed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0) if config.prune
        else optuna.pruners.NopPruner())
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=pruner)
    start = space.clip(family.defaults)
    if start:
        study.enqueue_trial(start)
    records: list[Trial] = []
    started = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        began = time.perf_counter()
        params = space.suggest(trial)
        folds: list[Metrics] = []
        values: list[float] = []
        state: TrialState = "complete"
        try:
            for step, split in enumerate(splits):
                scored = frame.iloc[split.test]
                scores = family.fit_score(frame.iloc[split.train], scored, feature_names,
                                          {**fixed, **params}, seed)
                folds.append(evaluate(scored, scores, k))
                values.append(figure(folds[-1], config.metric))
                trial.report(float(np.mean(values)), step)
                if step < len(splits) - 1 and trial.should_prune():
                    state = "pruned"
                    raise optuna.TrialPruned()
            return float(np.mean(values))
        except optuna.TrialPruned:
            raise
        except Exception:
            state = "failed"  # recorded, then the search stops with the error: a fit that
            raise             # fails on one configuration usually fails on all of them
        finally:
            records.append(Trial(family.name, trial.number, params, tuple(folds),
                                 config.metric, time.perf_counter() - began, state))

    def told(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            best = study.best_value if any(
                t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) else math.nan
            on_trial(family.name, len(records), config.trials, best,
                     _eta(len(records), config.trials, started, config.timeout_s))

    study.optimize(objective, n_trials=config.trials, timeout=config.timeout_s,
                   callbacks=[told], catch=())
    complete = [t for t in records if t.state == "complete"]
    best = max(complete, key=lambda t: (t.value, -t.number))
    return SearchResult(
        family=family.name, config=config, space=space, fixed=fixed, trials=tuple(records),
        best=best, seconds=time.perf_counter() - started,
        stopped_by="trials" if len(records) >= config.trials else "timeout",
        validation_folds=tuple(s.config.describe() for s in splits))
