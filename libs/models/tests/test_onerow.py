"""The one-row fast path scores like XGBoost itself, and steps aside when it cannot."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from rtml_models.xgboost import XGBoostModel
from rtml_models.xgboost.onerow import TOLERANCE, OneRowScorer


def _booster(objective: str, seed: int = 0, depth: int = 6) -> tuple[xgb.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = rng.random((3000, 8)) * 10
    rows[rng.random(rows.shape) < 0.05] = np.nan  # trees learn default directions
    labels = (np.nan_to_num(rows[:, 2]) + rng.normal(0, 2, len(rows)) > 6).astype(float)
    booster = xgb.train({"objective": objective, "max_depth": depth, "nthread": 1},
                        xgb.DMatrix(rows, label=labels, feature_names=[f"f{i}" for i in range(8)]),
                        num_boost_round=40)
    return booster, rows


@pytest.mark.parametrize("depth", [2, 6])
def test_scores_match_xgboost_on_rows_with_missing_values(depth: int) -> None:
    booster, _ = _booster("binary:logistic", depth=depth)
    scorer = OneRowScorer.from_booster(booster, 8)
    assert scorer is not None
    rng = np.random.default_rng(1)
    rows = np.vstack([rng.random((500, 8)) * 10, rng.normal(0, 30, (500, 8))]).astype(np.float32)
    rows[rng.random(rows.shape) < 0.1] = np.nan
    expected = booster.inplace_predict(rows).astype(np.float64)
    margins = booster.inplace_predict(rows, predict_type="margin").astype(np.float64)

    got = np.array([scorer.score(row) for row in rows])
    got_margins = np.array([scorer.margin(row) for row in rows])

    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(got_margins, margins, rtol=1e-6, atol=1e-5)


def test_model_predict_one_uses_it_and_agrees_with_predict() -> None:
    booster, rows = _booster("binary:logistic")
    model = XGBoostModel(booster)
    sample = np.nan_to_num(rows[:50])

    one_by_one = [model.predict_one(list(row)) for row in sample]

    assert isinstance(model._one_row, OneRowScorer)
    np.testing.assert_allclose(one_by_one, model.predict(sample), rtol=0, atol=TOLERANCE)


def test_objectives_it_cannot_reproduce_fall_back_to_xgboost() -> None:
    booster, rows = _booster("reg:squarederror")
    assert OneRowScorer.from_booster(booster, 8) is None
    model = XGBoostModel(booster)
    row = np.nan_to_num(rows[0])
    assert model.predict_one(list(row)) == pytest.approx(float(model.predict(row[None, :])[0]))
    assert model._one_row is None


def test_path_contributions_match_xgboost_approx_contribs_and_sum_to_the_margin() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 6))
    y = (x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(size=3000) > 1.0).astype(int)
    x[rng.random(x.shape) < 0.05] = np.nan
    names = [f"f{i}" for i in range(6)]
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 5, "nthread": 1},
                        xgb.DMatrix(x, label=y, feature_names=names), 60)
    scorer = OneRowScorer.from_booster(booster, 6)
    assert scorer is not None and scorer.explains
    rows = x[:100]
    expected = booster.predict(xgb.DMatrix(rows, feature_names=names), pred_contribs=True,
                               approx_contribs=True)
    got = np.array([scorer.contributions(row) for row in rows])
    assert np.abs(got - expected).max() < 1e-4
    margins = np.array([scorer.margin(row) for row in rows])
    assert np.abs(got.sum(axis=1) - margins).max() < 1e-4


def test_the_model_serves_path_contributions_through_the_walker_or_xgboost() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1000, 3))
    y = (x[:, 0] > 0).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3},
                        xgb.DMatrix(x, label=y, feature_names=["a", "b", "c"]), 10)
    model = XGBoostModel(booster)
    row = [0.4, -1.0, 2.0]
    walked = model.path_contributions(row)
    model._one_row = None  # as for a booster the walker cannot reproduce
    assert np.allclose(model.path_contributions(row), walked, atol=1e-5)


@pytest.mark.parametrize("params", [
    {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1},  # base score from the mean
    {"objective": "binary:logistic", "max_depth": 3, "eta": 1.0, "base_score": 0.037},
    {"objective": "reg:logistic", "max_depth": 4, "eta": 0.3},
])
def test_scores_are_xgboosts_bit_for_bit_one_row_or_a_batch(params: dict[str, object]) -> None:
    """The decision API scores one row with the walker, the scorer a batch with XGBoost:
    the same vector must get the same score, not one within an ulp of it. Before the
    walker used ``expf`` and XGBoost's float32 base margin, 15.7 % of the decisions of
    the end-to-end consistency test got a score 1-2 float32 ulps (up to 1.2e-7) from the
    scorer's on the same inputs (a quarter to a third of these rows)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4000, 6)) * [1, 10, 100, 1, 1, 1]
    y = (x[:, 0] + x[:, 1] / 10 * x[:, 3] + rng.normal(size=4000) > 0.7).astype(float)
    x[rng.random(x.shape) < 0.05] = np.nan
    booster = xgb.train({**params, "nthread": 1},
                        xgb.DMatrix(x, label=y, feature_names=[f"f{i}" for i in range(6)]), 80)
    model = XGBoostModel(booster)
    rows = np.vstack([rng.normal(size=(3000, 6)) * [1, 10, 100, 1, 1, 1],
                      rng.normal(size=(20, 6)) * 1e4,  # margins past the sigmoid's clamp
                      np.zeros((1, 6))])
    rows[rng.random(rows.shape) < 0.1] = np.nan

    one_by_one = np.array([model.predict_one(list(row)) for row in rows])

    assert isinstance(model._one_row, OneRowScorer)
    batch = model.predict(rows)
    assert np.array_equal(one_by_one, batch), (
        f"{int((one_by_one != batch).sum())} of {len(rows)} differ, max "
        f"{np.abs(one_by_one - batch).max():.3g}")
    assert len(np.unique(batch)) > 1000  # not vacuous: the rows take many paths
