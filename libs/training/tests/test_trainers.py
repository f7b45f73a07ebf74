"""The two trainers: named XGBoost boosters, River learning in event-time order."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rtml_models.river import RiverModel, default_online_model
from rtml_models.xgboost import XGBoostModel
from rtml_training.params import XGBOOST_DEFAULTS, xgboost_params
from rtml_training.river_trainer import feature_dicts, train_river
from rtml_training.xgb_trainer import train_xgboost

NAMES = ["amount", "night"]


def frame(n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    amount = rng.gamma(2.0, 40.0, n)
    return pd.DataFrame({
        "transaction_id": np.arange(n)[::-1],  # ids against time order: sorting must use time
        "event_time": pd.Timestamp("2018-07-25", tz="UTC") + pd.to_timedelta(
            rng.permutation(n), unit="min"),
        "night": rng.integers(0, 2, n).astype(float), "amount": amount,
        "is_fraud": amount > 150,
    })


def test_xgboost_booster_carries_the_feature_names_in_order() -> None:
    data = frame()
    booster = train_xgboost(data, NAMES, params={"n_estimators": 5})
    assert booster.feature_names == NAMES
    model = XGBoostModel(booster)
    scores = model.predict(data[NAMES].to_numpy())
    assert scores[data["is_fraud"].to_numpy()].mean() > scores[~data["is_fraud"].to_numpy()].mean()
    assert xgboost_params({"max_depth": 3}) == {**XGBOOST_DEFAULTS, "max_depth": 3}


def test_river_learns_in_event_time_order() -> None:
    data = frame()
    model = train_river(data, NAMES)
    assert isinstance(RiverModel(model, NAMES), RiverModel)
    # The same rows fed by hand in time order give the same model state.
    by_hand = default_online_model()
    ordered = data.sort_values("event_time")
    for row, label in zip(feature_dicts(ordered, NAMES), ordered["is_fraud"], strict=True):
        by_hand.learn_one(row, bool(label))
    x = next(feature_dicts(data, NAMES))
    assert model.predict_proba_one(x) == by_hand.predict_proba_one(x)
    # ... and a different order gives a different one (order matters for online learning).
    shuffled = data.assign(event_time=data["event_time"].sort_values(ascending=False).to_numpy())
    assert train_river(shuffled, NAMES).predict_proba_one(x) != model.predict_proba_one(x)
    fraud = [model.predict_proba_one(x)[True]
             for x in feature_dicts(data[data["is_fraud"]], NAMES)]
    genuine = [model.predict_proba_one(x)[True]
               for x in feature_dicts(data[~data["is_fraud"]], NAMES)]
    assert np.mean(fraud) > np.mean(genuine)
