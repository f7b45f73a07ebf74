"""Fit a River online model by replaying the training rows in event-time order.

The online model learns one transaction at a time, exactly as it would from
the live label stream, so training replays the training period in event-time
order (ties by transaction id) through ``learn_one`` on dicts of feature name
-> float. The default estimator is the model library's
(:func:`river_estimator`: :func:`rtml_models.river.default_online_model`, a
standardised logistic regression, unless parameters are given), so a trained
model and one the online learner starts from agree. It is a baseline for the
streaming path, not expected to match XGBoost; the pipeline evaluates it on the
same test set through
``predict_proba_one``, the call the online scorer makes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from river import linear_model, optim, preprocessing

from rtml_training.params import river_params


def river_estimator(params: Mapping[str, Any] | None = None) -> Any:
    """The online model (:func:`rtml_models.river.default_online_model`'s shape: standard
    scaler + logistic regression by SGD) with :data:`~rtml_training.params.RIVER_DEFAULTS`
    updated by ``params``; with no overrides it equals ``default_online_model()``."""
    p = river_params(params)
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(
        optimizer=optim.SGD(p["learning_rate"]), l2=p["l2"], intercept_lr=p["intercept_lr"])


def feature_dicts(frame: pd.DataFrame, feature_names: Sequence[str]) -> Iterator[dict[str, float]]:
    """Each row of ``frame`` as {feature name: float}, in row order."""
    names = list(feature_names)
    for row in frame[names].to_numpy(dtype=np.float64).tolist():
        yield dict(zip(names, row, strict=True))


def train_river(frame: pd.DataFrame, feature_names: Sequence[str], label: str = "is_fraud",
                estimator: Any | None = None, time_column: str = "event_time",
                id_column: str = "transaction_id",
                params: Mapping[str, Any] | None = None) -> Any:
    """``learn_one`` over ``frame`` in event-time order; returns the (fitted) estimator
    (``estimator``, else :func:`river_estimator` of ``params``)."""
    model = river_estimator(params) if estimator is None else estimator
    ordered = frame.sort_values([time_column, id_column], kind="stable")
    labels = ordered[label].to_numpy(dtype=bool).tolist()
    for x, y in zip(feature_dicts(ordered, feature_names), labels, strict=True):
        model.learn_one(x, y)
    return model
