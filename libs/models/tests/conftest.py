"""Tiny models over named features, shared by the model library's tests."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from rtml_features.definitions import FeatureSet, RowFeature, RowKind
from rtml_models.river import RiverModel, default_online_model
from rtml_models.xgboost import XGBoostModel

FEATURES = ["amount", "night", "weekend"]


@pytest.fixture(scope="session")
def feature_set() -> FeatureSet:
    """A three-feature set (row features only: no history needed)."""
    return FeatureSet("tiny", [
        RowFeature("amount", RowKind.FIELD, field="amount"),
        RowFeature("night", RowKind.NIGHT),
        RowFeature("weekend", RowKind.WEEKEND),
    ])


@pytest.fixture(scope="session")
def rows() -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.column_stack([rng.gamma(2.0, 40.0, 400), rng.integers(0, 2, 400),
                            rng.integers(0, 2, 400)]).astype(np.float64)


@pytest.fixture(scope="session")
def labels(rows: np.ndarray) -> np.ndarray:
    return (rows[:, 0] > 150).astype(np.float64)


@pytest.fixture
def xgb_model(rows: np.ndarray, labels: np.ndarray) -> XGBoostModel:
    matrix = xgb.DMatrix(rows, label=labels, feature_names=FEATURES)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3}, matrix, 10)
    return XGBoostModel(booster)


@pytest.fixture
def river_model(rows: np.ndarray, labels: np.ndarray) -> RiverModel:
    model = RiverModel(default_online_model(), FEATURES)
    for row, label in zip(rows, labels, strict=True):
        model.learn_one(row, bool(label))
    return model
