"""Scoring one row without XGBoost's per-call overhead: the trees as flat numpy arrays.

Why: a decision scores one row per request, and ``Booster.inplace_predict``
spends ~200 µs per call on argument marshalling (array interface, JSON
config, a proxy DMatrix, ctypes), about 100x the work of walking 100 trees.
Here every tree is walked at once, one level per step (``max_depth``
vectorised steps), with XGBoost's own rules: float32 features and splits,
``x < split`` goes left, a missing value (NaN) follows ``default_left``,
leaf values summed in float32 in tree order onto the base margin, then the
logistic link.

Only what this module can reproduce is accepted (:meth:`OneRowScorer.from_booster`
returns None otherwise: the caller keeps using XGBoost): a ``gbtree`` of
numerical splits with a logistic objective and a single output. It checks
itself against ``inplace_predict`` on probe rows when built and refuses to
serve if any score differs by more than :data:`TOLERANCE` (float32 rounding of
the final sigmoid may differ by an ulp).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import xgboost as xgb

#: Largest accepted difference from XGBoost on the self-check probes.
TOLERANCE = 1e-6
_LOGISTIC = {"binary:logistic", "reg:logistic"}


def _base_score(raw: str) -> float:
    """``learner_model_param.base_score``: "5E-1", or "[5E-1]" (XGBoost 3 vectors)."""
    values = raw.strip("[]").split(",")
    if len(values) != 1:
        raise ValueError(f"one base score expected, got {raw!r}")
    return float(values[0])


class OneRowScorer:
    """A logistic ``gbtree`` booster as flat arrays; :meth:`score` predicts one row."""

    def __init__(self, left: np.ndarray, right: np.ndarray, feature: np.ndarray,
                 threshold: np.ndarray, default_left: np.ndarray, value: np.ndarray,
                 roots: np.ndarray, depth: int, base_margin: float) -> None:
        self._left, self._right, self._feature = left, right, feature
        self._threshold, self._default_left, self._value = threshold, default_left, value
        self._roots, self._depth = roots, depth
        self._base = np.array([base_margin], dtype=np.float32)

    @classmethod
    def from_booster(cls, booster: xgb.Booster, n_features: int) -> OneRowScorer | None:
        """The flat form of ``booster``, or None if it is not one this module reproduces."""
        try:
            scorer = cls._build(json.loads(booster.save_raw("json")))
        except (KeyError, ValueError, TypeError):
            return None
        if scorer is None or not scorer._agrees_with(booster, n_features):
            return None
        return scorer

    @classmethod
    def _build(cls, model: dict[str, Any]) -> OneRowScorer | None:
        learner = model["learner"]
        booster = learner["gradient_booster"]
        if learner["objective"]["name"] not in _LOGISTIC or booster["name"] != "gbtree":
            return None
        params = learner["learner_model_param"]
        if int(params.get("num_target", 1)) != 1 or int(params.get("num_class", 0)) > 1:
            return None
        trees = booster["model"]["trees"]
        if not trees:
            return None
        left, right, feature, threshold, default_left, value, roots = [], [], [], [], [], [], []
        depth, offset = 0, 0
        for tree in trees:
            if tree.get("categories_nodes"):
                return None  # categorical splits: not reproduced here
            lefts = np.asarray(tree["left_children"], dtype=np.int64)
            rights = np.asarray(tree["right_children"], dtype=np.int64)
            leaf = lefts == -1
            own = np.arange(offset, offset + len(lefts))
            # a leaf points to itself, so extra steps past it change nothing
            left.append(np.where(leaf, own, lefts + offset))
            right.append(np.where(leaf, own, rights + offset))
            feature.append(np.where(leaf, 0, np.asarray(tree["split_indices"], dtype=np.int64)))
            conditions = np.asarray(tree["split_conditions"], dtype=np.float32)
            threshold.append(conditions)
            value.append(np.where(leaf, conditions, np.float32(0)).astype(np.float32))
            default_left.append(np.asarray(tree["default_left"], dtype=bool))
            roots.append(offset)
            depth = max(depth, _depth(lefts, rights))
            offset += len(lefts)
        base = _base_score(params["base_score"])
        if not 0.0 < base < 1.0:
            return None
        base_margin = float(np.float32(-math.log(1.0 / base - 1.0)))
        return cls(np.concatenate(left), np.concatenate(right), np.concatenate(feature),
                   np.concatenate(threshold), np.concatenate(default_left),
                   np.concatenate(value), np.asarray(roots, dtype=np.int64), depth,
                   base_margin)

    def _agrees_with(self, booster: xgb.Booster, n_features: int) -> bool:
        rng = np.random.default_rng(0)
        probes = np.vstack([np.zeros(n_features), rng.normal(0, 10, (64, n_features)),
                            rng.random((64, n_features))]).astype(np.float32)
        probes[::3, ::2] = np.nan  # missing values take the default branch
        expected = booster.inplace_predict(probes, validate_features=False)
        got = np.array([self.score(row) for row in probes])
        return bool(np.all(np.abs(got - np.asarray(expected, dtype=np.float64)) <= TOLERANCE))

    def margin(self, row: Sequence[float] | np.ndarray) -> float:
        """Raw score (log-odds) of one row, XGBoost's ``output_margin``."""
        x = np.asarray(row, dtype=np.float32)
        node = self._roots
        for _ in range(self._depth):
            values = x[self._feature[node]]
            go_left = np.where(np.isnan(values), self._default_left[node],
                               values < self._threshold[node])
            node = np.where(go_left, self._left[node], self._right[node])
        # float32, in tree order onto the base margin: XGBoost's own summation
        total = np.add.accumulate(np.concatenate((self._base, self._value[node])))
        return float(total[-1])

    def score(self, row: Sequence[float] | np.ndarray) -> float:
        """Probability of one row (logistic link in float32, as XGBoost computes it)."""
        margin = np.float32(self.margin(row))
        return float(np.float32(1.0) / (np.float32(1.0) + np.exp(-margin)))


def _depth(lefts: np.ndarray, rights: np.ndarray) -> int:
    """Edges on the longest root-to-leaf path of one tree (node 0 is the root)."""
    depth, level = 0, [0]
    while True:
        children = [c for n in level for c in (lefts[n], rights[n]) if c != -1]
        if not children:
            return depth
        depth, level = depth + 1, children
