"""Fit the XGBoost fraud model on the training frame.

The parameters are :data:`rtml_training.params.XGBOOST_DEFAULTS` (XGBoost's
3.x defaults written out, a fixed seed, two threads) updated with the run's
own (``rtml train --params``, or a model-selection trial). Columns are passed in the feature set's
order and the booster keeps their names: the scorer builds its input vector
from the same names, so a feature-order mismatch fails loudly instead of
scoring garbage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from rtml_training.params import xgboost_params


def train_xgboost(frame: pd.DataFrame, feature_names: Sequence[str], label: str = "is_fraud",
                  params: Mapping[str, Any] | None = None) -> xgb.Booster:
    """Fit an ``XGBClassifier`` on ``frame[feature_names]`` and return its booster."""
    names = list(feature_names)
    model = xgb.XGBClassifier(**xgboost_params(params))
    features = frame[names].astype(np.float64)
    model.fit(features, frame[label].to_numpy(dtype=np.int8))
    booster = model.get_booster()
    booster.feature_names = names
    return booster

