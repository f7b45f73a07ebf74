"""Fit the XGBoost fraud model on the training frame.

The defaults are XGBoost's own (the reference handbook's XGBoost result uses
them too) with a fixed seed, so a run is reproducible, and two threads, the
cores of the development machine. Columns are passed in the feature set's
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

#: Overridable by ``params``; everything else is XGBoost's default.
DEFAULT_PARAMS: dict[str, Any] = {"random_state": 0, "n_jobs": 2}


def xgb_params(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parameters a fit uses: :data:`DEFAULT_PARAMS` updated with ``overrides``."""
    return {**DEFAULT_PARAMS, **(overrides or {})}


def train_xgboost(frame: pd.DataFrame, feature_names: Sequence[str], label: str = "is_fraud",
                  params: Mapping[str, Any] | None = None) -> xgb.Booster:
    """Fit an ``XGBClassifier`` on ``frame[feature_names]`` and return its booster."""
    names = list(feature_names)
    model = xgb.XGBClassifier(**xgb_params(params))
    features = frame[names].astype(np.float64)
    model.fit(features, frame[label].to_numpy(dtype=np.int8))
    booster = model.get_booster()
    booster.feature_names = names
    return booster

