"""Fit a River online model by replaying the training rows in event-time order.

The online model learns one transaction at a time, exactly as it would from
the live label stream, so training replays the training period in event-time
order (ties by transaction id) through ``learn_one`` on dicts of feature name
-> float. The default estimator is the model library's
(:func:`rtml_models.river.default_online_model`, a standardised logistic
regression), so a trained model and one the online learner starts from
agree. It is a baseline for the streaming path, not expected to match
XGBoost; the pipeline evaluates it on the same test set through
``predict_proba_one``, the call the online scorer makes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from rtml_models.river import default_online_model


def feature_dicts(frame: pd.DataFrame, feature_names: Sequence[str]) -> Iterator[dict[str, float]]:
    """Each row of ``frame`` as {feature name: float}, in row order."""
    names = list(feature_names)
    for row in frame[names].to_numpy(dtype=np.float64).tolist():
        yield dict(zip(names, row, strict=True))


def train_river(frame: pd.DataFrame, feature_names: Sequence[str], label: str = "is_fraud",
                estimator: Any | None = None, time_column: str = "event_time",
                id_column: str = "transaction_id") -> Any:
    """``learn_one`` over ``frame`` in event-time order; returns the (fitted) estimator."""
    model = default_online_model() if estimator is None else estimator
    ordered = frame.sort_values([time_column, id_column], kind="stable")
    labels = ordered[label].to_numpy(dtype=bool).tolist()
    for x, y in zip(feature_dicts(ordered, feature_names), labels, strict=True):
        model.learn_one(x, y)
    return model
