"""An XGBoost booster behind the :class:`~rtml_models.base.ScoringModel` contract.

Stored as ``model.ubj`` (UBJSON): XGBoost's documented, version-portable
format that holds trees and parameters only, so loading one runs no code.
Feature names travel inside the booster, which is how the registry's gate
checks a model's inputs against the feature set without trusting a tag.
Predictions use ``inplace_predict`` (no DMatrix per call), single-threaded by
default because a serving process runs many small predictions, not one big
one, and thread start-up dominates a one-row call. One row (the decision
API's case) goes through :class:`~rtml_models.xgboost.onerow.OneRowScorer`
when it reproduces the booster (checked against XGBoost when first used):
~60 µs instead of ~200-500 µs of per-call overhead.

Calibration: ``predict_raw`` / ``predict_raw_one`` give the booster's own
probability; :meth:`~rtml_models.base.ScoringModel.predict` and
``predict_one`` map it through the model's calibration, if any. The walker
and ``inplace_predict`` give the same raw float, and the calibration maps
equal inputs to equal outputs, so calibrated one-row and batch scores stay
bit-equal. Explanations (:meth:`XGBoostModel.contributions`,
:meth:`XGBoostModel.path_contributions`) stay in the booster's margin
(log-odds) space: they sum to the *raw* score's logit, not the calibrated
one's; a calibration is monotone, so their ranking and signs still say which
features pushed the score up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xgboost as xgb

from rtml_models.base import F64, ModelError, ScoringModel
from rtml_models.xgboost.onerow import OneRowScorer

MODEL_FILE = "model.ubj"


class XGBoostModel(ScoringModel):
    """A binary-logistic booster with named features.

    >>> import numpy as np, xgboost as xgb
    >>> booster = xgb.train({"objective": "binary:logistic"},
    ...     xgb.DMatrix(np.eye(2), label=[0, 1], feature_names=["a", "b"]), 1)
    >>> model = XGBoostModel(booster)
    >>> 0.0 <= model.predict_one([1.0, 0.0]) <= 1.0
    True
    """

    flavor: ClassVar[str] = "xgboost"

    def __init__(self, booster: xgb.Booster, nthread: int = 1) -> None:
        names = booster.feature_names
        if not names:
            raise ModelError("the booster has no feature names; train it on named columns")
        self._booster = booster
        self._booster.set_param({"nthread": nthread})
        self._names = tuple(names)
        self._one_row: OneRowScorer | bool | None = False  # False: not built yet

    @property
    def booster(self) -> xgb.Booster:
        """The underlying booster (e.g. for ``pred_contribs`` explanations)."""
        return self._booster

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._names

    def predict_raw(self, rows: F64) -> F64:
        array = self.check_rows(rows)
        scores = self._booster.inplace_predict(array, validate_features=False)
        return np.asarray(scores, dtype=np.float64).reshape(-1)

    def _scorer(self) -> OneRowScorer | None:
        if self._one_row is False:  # built on first use: training never needs it
            self._one_row = OneRowScorer.from_booster(self._booster, len(self._names))
        return self._one_row if isinstance(self._one_row, OneRowScorer) else None

    def predict_raw_one(self, row: Sequence[float]) -> float:
        scorer = self._scorer()
        if scorer is not None and len(row) == len(self._names):
            return scorer.score(row)
        array = np.asarray(row, dtype=np.float64).reshape(1, -1)
        return float(self.predict_raw(array)[0])

    def path_contributions(self, row: Sequence[float]) -> F64:
        """One row's path (Saabas) contributions in log-odds, last entry the bias.

        Margin space, uncalibrated: they sum to the logit of
        :meth:`predict_raw_one`, whatever calibration the model carries.

        XGBoost's ``approx_contribs``: exact for the path the row took, not
        averaged over feature orderings like TreeSHAP, at about the cost of
        scoring (see :mod:`rtml_models.xgboost.onerow`).
        """
        scorer = self._scorer()
        if isinstance(scorer, OneRowScorer) and scorer.explains and len(row) == len(self._names):
            return scorer.contributions(row)
        matrix = xgb.DMatrix(self.check_rows(np.asarray(row, dtype=np.float64).reshape(1, -1)),
                             feature_names=list(self._names), nthread=1)
        return np.asarray(self._booster.predict(matrix, pred_contribs=True,
                                                approx_contribs=True)[0], dtype=np.float64)

    def contributions(self, rows: F64) -> F64:
        """Per-feature SHAP contributions (log-odds), last column the bias.

        Margin space, uncalibrated: rows sum to the logit of :meth:`predict_raw`.
        """
        # nthread=1: a threaded DMatrix build costs milliseconds for a few rows
        matrix = xgb.DMatrix(self.check_rows(rows), feature_names=list(self._names), nthread=1)
        return np.asarray(self._booster.predict(matrix, pred_contribs=True), dtype=np.float64)

    def write(self, directory: Path) -> list[str]:
        self._booster.save_model(str(directory / MODEL_FILE))
        return [MODEL_FILE]

    @classmethod
    def read(cls, directory: Path, feature_names: tuple[str, ...],
             extra: Mapping[str, Any]) -> XGBoostModel:
        booster = xgb.Booster()
        try:
            booster.load_model(str(directory / MODEL_FILE))
        except xgb.core.XGBoostError as exc:
            raise ModelError(f"{MODEL_FILE} is not a readable XGBoost model: {exc}") from exc
        return cls(booster)

    def describe(self) -> dict[str, Any]:
        return {"xgboost_version": xgb.__version__,
                "trees": self._booster.num_boosted_rounds()}
