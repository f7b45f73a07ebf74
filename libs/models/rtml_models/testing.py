"""Test helpers: a small calibrated XGBoost champion in a real registry.

Services' tests (scorer, decision API) check that a calibrated champion is
scored through its calibration on their paths; they share this one way of
making such a model so the two checks stay about the same thing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from rtml_features.definitions import FeatureSet
from rtml_models.calibration import fit_isotonic, fit_platt
from rtml_models.registry.base import ModelRegistry
from rtml_models.xgboost import XGBoostModel


def calibrated_toy_model(rows: npt.NDArray[np.float64], names: Sequence[str], *,
                         label_column: int, threshold: float, seed: int,
                         method: Literal["platt", "isotonic"]) -> XGBoostModel:
    """A booster trained on the first 1,500 ``rows`` with reweighted positives (its raw
    scores overstate fraud, as calibration exists to fix), calibrated on the rest."""
    rng = np.random.default_rng(seed)
    labels = (rows[:, label_column] + rng.normal(0, 3, len(rows)) > threshold).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1,
                         "scale_pos_weight": 8.0},
                        xgb.DMatrix(rows[:1500], label=labels[:1500], feature_names=list(names)),
                        20)
    model = XGBoostModel(booster)
    fit = fit_platt if method == "platt" else fit_isotonic
    return model.with_calibration(fit(model.predict_raw(rows[1500:]), labels[1500:]))


def register_champion(registry: ModelRegistry, model: XGBoostModel,
                      feature_set: FeatureSet) -> str:
    """Register ``model`` under a fresh name with the ``champion`` alias; the name."""
    name = f"calibrated-{uuid.uuid4().hex[:8]}"
    registry.set_alias(name, "champion",
                       registry.register(name, model, feature_set=feature_set).version)
    return name
