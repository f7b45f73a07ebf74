"""Model families a selection can search: how each one fits on rows and scores others.

XGBoost and River are the servable families (their models are registered and
served); logistic regression and random forest are the reference handbook's
other families, searched with the same folds and metric so the comparison
table can put them side by side — they are never registered.

Every family scores through the same path as the model it would serve: the
XGBoost family fits with :func:`~rtml_training.xgb_trainer.train_xgboost` and
scores with :class:`rtml_models.xgboost.XGBoostModel`'s raw scores, so a trial
measures the model ``rtml train`` would produce with those parameters.

>>> sorted(FAMILIES)
['logistic-regression', 'random-forest', 'river', 'xgboost']
>>> FAMILIES["random-forest"].servable
False
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from rtml_training.selection.space import SPACES, SearchSpace

F64 = npt.NDArray[np.float64]
#: (training frame, scored frame, feature names, parameters, seed) -> raw scores of the rows.
FitScore = Callable[[pd.DataFrame, pd.DataFrame, Sequence[str], Mapping[str, Any], int], F64]

#: Handbook-style defaults of the comparison families (a search starts from them).
LOGISTIC_DEFAULTS: dict[str, Any] = {"C": 1.0}
FOREST_DEFAULTS: dict[str, Any] = {"n_estimators": 100, "max_depth": 20, "min_samples_leaf": 1,
                                   "max_features": 1.0}


def _matrix(frame: pd.DataFrame, names: Sequence[str]) -> F64:
    return frame[list(names)].to_numpy(dtype=np.float64)


def _labels(frame: pd.DataFrame) -> npt.NDArray[np.int8]:
    return frame["is_fraud"].to_numpy(dtype=np.int8)


def _xgboost(train: pd.DataFrame, scored: pd.DataFrame, names: Sequence[str],
             params: Mapping[str, Any], seed: int) -> F64:
    from rtml_models.xgboost import XGBoostModel
    from rtml_training.xgb_trainer import train_xgboost

    booster = train_xgboost(train, names, params={"random_state": seed, **params})
    return XGBoostModel(booster).predict_raw(_matrix(scored, names))


def _river(train: pd.DataFrame, scored: pd.DataFrame, names: Sequence[str],
           params: Mapping[str, Any], seed: int) -> F64:
    from rtml_models.river import RiverModel
    from rtml_training.river_trainer import train_river

    model = RiverModel(train_river(train, names, params=params), names)
    return model.predict_raw(_matrix(scored, names))


def _logistic(train: pd.DataFrame, scored: pd.DataFrame, names: Sequence[str],
              params: Mapping[str, Any], seed: int) -> F64:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(
        C=float({**LOGISTIC_DEFAULTS, **params}["C"]), max_iter=1000, random_state=seed))
    model.fit(_matrix(train, names), _labels(train))
    return np.asarray(model.predict_proba(_matrix(scored, names))[:, 1], dtype=np.float64)


def _forest(train: pd.DataFrame, scored: pd.DataFrame, names: Sequence[str],
            params: Mapping[str, Any], seed: int) -> F64:
    from sklearn.ensemble import RandomForestClassifier

    p = {**FOREST_DEFAULTS, **params}
    model = RandomForestClassifier(
        n_estimators=int(p["n_estimators"]), max_depth=int(p["max_depth"]),
        min_samples_leaf=int(p["min_samples_leaf"]), max_features=float(p["max_features"]),
        n_jobs=2, random_state=seed)
    model.fit(_matrix(train, names), _labels(train))
    return np.asarray(model.predict_proba(_matrix(scored, names))[:, 1], dtype=np.float64)


@dataclass(frozen=True)
class Family:
    """A model family: its search space, defaults, how it fits and scores, servable or not."""

    name: str
    title: str
    servable: bool
    space: SearchSpace
    defaults: Mapping[str, Any]
    fit_score: FitScore


def _families() -> dict[str, Family]:
    from rtml_training.params import RIVER_DEFAULTS, XGBOOST_DEFAULTS

    return {
        "xgboost": Family("xgboost", "XGBoost", True, SPACES["xgboost"], XGBOOST_DEFAULTS,
                          _xgboost),
        "river": Family("river", "River (online logistic regression)", True, SPACES["river"],
                        RIVER_DEFAULTS, _river),
        "logistic-regression": Family("logistic-regression", "logistic regression", False,
                                      SPACES["logistic-regression"], LOGISTIC_DEFAULTS,
                                      _logistic),
        "random-forest": Family("random-forest", "random forest", False, SPACES["random-forest"],
                                FOREST_DEFAULTS, _forest),
    }


FAMILIES: dict[str, Family] = _families()


def get_family(name: str) -> Family:
    """A family by name, with the known names in the error."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r}; known: "
                       f"{', '.join(sorted(FAMILIES))}") from None
