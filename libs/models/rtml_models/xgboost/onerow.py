"""Scoring one row without XGBoost's per-call overhead: the trees as flat numpy arrays.

Why: a decision scores one row per request, and ``Booster.inplace_predict``
spends ~200 µs per call on argument marshalling (array interface, JSON
config, a proxy DMatrix, ctypes), about 100x the work of walking 100 trees.
Here every tree is walked at once, one level per step (``max_depth``
vectorised steps), with XGBoost's own rules: float32 features and splits,
``x < split`` goes left, a missing value (NaN) follows ``default_left``,
leaf values summed in float32 in tree order onto the base margin, then the
logistic link — each step in XGBoost's own float32 arithmetic, so a score is
bit for bit the one ``inplace_predict`` gives (the base margin is
``-logf(1.0f / base_score - 1.0f)`` and the link ``1.0f / (expf(-x) + 1.0f)``,
both with the C library's ``logf`` / ``expf``: numpy's float32 ``exp`` differs
from ``expf`` by an ulp on about a fifth of margins, and the base margin
computed in double by up to a few ulps). Why exactly: the decision API scores
with this walker and the scorer with ``inplace_predict`` (batches of more than
one row), and the two must give the same score for the same vector
(docs/features.md, "Decision API and scorer").

Only what this module can reproduce is accepted (:meth:`OneRowScorer.from_booster`
returns None otherwise: the caller keeps using XGBoost): a ``gbtree`` of
numerical splits with a logistic objective and a single output. It checks
itself against ``inplace_predict`` on probe rows when built and refuses to
serve (logging why) if any score differs at all (:data:`TOLERANCE` is 0).

:meth:`OneRowScorer.contributions` explains a row on the same walk: the
path attribution XGBoost computes with ``pred_contribs=True,
approx_contribs=True`` (Saabas): each node carries the hessian-weighted mean
of the leaves below it, and a split's feature is credited with the change of
that mean from the node to the child the row took; the bias is the base
margin plus the roots' means, and everything sums to the margin. It costs
about the walk itself, where exact TreeSHAP costs several times the score,
so every decision can carry an explanation. It is checked against XGBoost
the same way, within :data:`CONTRIBUTION_TOLERANCE`.

>>> import numpy as np, xgboost as xgb
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(500, 3)); y = (x[:, 0] + x[:, 1] > 0).astype(int)
>>> booster = xgb.train({"objective": "binary:logistic", "max_depth": 3},
...                     xgb.DMatrix(x, label=y, feature_names=["a", "b", "c"]), 10)
>>> scorer = OneRowScorer.from_booster(booster, 3)
>>> row = np.array([1.0, -0.5, 0.2])
>>> c = scorer.contributions(row)
>>> bool(abs(c.sum() - scorer.margin(row)) < 1e-5), len(c)
(True, 4)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xgboost as xgb

logger = logging.getLogger(__name__)

#: Largest accepted difference from XGBoost on the self-check probes: none, the
#: scores must be XGBoost's own (see the module docstring).
TOLERANCE = 0.0
#: The same for contributions (log-odds; XGBoost accumulates them in float32).
CONTRIBUTION_TOLERANCE = 1e-4
_LOGISTIC = {"binary:logistic", "reg:logistic"}
#: XGBoost's ``common::Sigmoid`` clamps ``-x`` here (``expf`` would overflow).
_EXP_CLAMP = float(np.float32(88.7))
_ONE = np.float32(1.0)


def _c_float_function(name: str) -> Callable[[float], float] | None:
    """``float name(float)`` from the C math library XGBoost calls; None without one."""
    try:
        function = getattr(ctypes.CDLL(ctypes.util.find_library("m")), name)
    except (OSError, AttributeError, TypeError):
        return None
    function.restype, function.argtypes = ctypes.c_float, [ctypes.c_float]
    return function


def _numpy_float_function(ufunc: Callable[[np.float32], np.float32]
                          ) -> Callable[[float], float]:
    return lambda x: float(ufunc(np.float32(x)))


#: ``expf`` / ``logf`` of the C library (numpy's float32 ``exp`` differs from ``expf``
#: by an ulp on about a fifth of margins); numpy's where there is no C library to load.
_expf = _c_float_function("expf") or _numpy_float_function(np.exp)
_logf = _c_float_function("logf") or _numpy_float_function(np.log)


def base_margin(base_score: float) -> np.float32:
    """XGBoost's logistic ``ProbToMargin``: ``-logf(1.0f / base_score - 1.0f)`` in float32."""
    base = np.float32(base_score)
    return np.float32(-_logf(float(_ONE / base - _ONE)))


def sigmoid32(margin: float) -> float:
    """XGBoost's float ``common::Sigmoid``: ``1.0f / (expf(min(-x, 88.7f)) + 1.0f + 1e-16f)``.

    The sum and the quotient are computed in double and rounded to float32: for
    one ``+`` or ``/`` of float32 operands that is exactly the float32 operation
    (double has more than 2 x 24 + 2 bits). The ``1e-16f`` never changes a float32
    sum of at least 1, so it is left out.
    """
    x = -margin
    denominator = float(np.float32(_expf(x if x < _EXP_CLAMP else _EXP_CLAMP) + 1.0))
    return float(np.float32(1.0 / denominator))


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
                 roots: np.ndarray, depth: int, base_margin: float,
                 mean: np.ndarray | None = None, n_features: int = 0) -> None:
        self._left, self._right, self._feature = left, right, feature
        self._threshold, self._default_left, self._value = threshold, default_left, value
        self._roots, self._depth = roots, depth
        self._base = np.array([base_margin], dtype=np.float32)
        #: Hessian-weighted mean leaf value under each node (None: no contributions).
        self._mean = mean
        self._is_split = left != np.arange(len(left))
        self._n_features = n_features

    @classmethod
    def from_booster(cls, booster: xgb.Booster, n_features: int) -> OneRowScorer | None:
        """The flat form of ``booster``, or None if it is not one this module reproduces."""
        try:
            scorer = cls._build(json.loads(booster.save_raw("json")), n_features)
        except (KeyError, ValueError, TypeError):
            return None
        if scorer is None:
            return None
        if not scorer._agrees_with(booster, n_features):
            logger.warning("the one-row scorer does not reproduce this booster's scores bit "
                           "for bit; XGBoost scores single rows instead (slower)")
            return None
        if scorer._mean is not None and not scorer._contributions_agree(booster, n_features):
            scorer._mean = None  # scores still served; explanations go back to XGBoost
        return scorer

    @classmethod
    def _build(cls, model: dict[str, Any], n_features: int = 0) -> OneRowScorer | None:
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
        means: list[np.ndarray] | None = []
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
            if means is not None and "sum_hessian" in tree:
                means.append(_node_means(lefts, rights, np.where(leaf, conditions, 0.0),
                                         np.asarray(tree["sum_hessian"], dtype=np.float64)))
            else:
                means = None
            roots.append(offset)
            depth = max(depth, _depth(lefts, rights))
            offset += len(lefts)
        base = _base_score(params["base_score"])
        if not 0.0 < base < 1.0:
            return None
        return cls(np.concatenate(left), np.concatenate(right), np.concatenate(feature),
                   np.concatenate(threshold), np.concatenate(default_left),
                   np.concatenate(value), np.asarray(roots, dtype=np.int64), depth,
                   float(base_margin(base)), np.concatenate(means) if means else None,
                   n_features)

    def _agrees_with(self, booster: xgb.Booster, n_features: int) -> bool:
        rng = np.random.default_rng(0)
        probes = np.vstack([np.zeros(n_features), rng.normal(0, 10, (64, n_features)),
                            rng.random((64, n_features))]).astype(np.float32)
        probes[::3, ::2] = np.nan  # missing values take the default branch
        expected = booster.inplace_predict(probes, validate_features=False)
        got = np.array([self.score(row) for row in probes])
        return bool(np.all(np.abs(got - np.asarray(expected, dtype=np.float64)) <= TOLERANCE))

    def _contributions_agree(self, booster: xgb.Booster, n_features: int) -> bool:
        rng = np.random.default_rng(1)
        probes = np.vstack([np.zeros(n_features), rng.normal(0, 10, (32, n_features))])
        probes[::3, ::2] = np.nan
        matrix = xgb.DMatrix(probes.astype(np.float32), feature_names=booster.feature_names,
                             nthread=1)
        expected = booster.predict(matrix, pred_contribs=True, approx_contribs=True)
        got = np.array([self.contributions(row) for row in probes])
        return bool(got.shape == expected.shape
                    and np.all(np.abs(got - expected) <= CONTRIBUTION_TOLERANCE))

    @property
    def explains(self) -> bool:
        """Whether :meth:`contributions` is available (it passed its check)."""
        return self._mean is not None

    def contributions(self, row: Sequence[float] | np.ndarray) -> np.ndarray:
        """Path (Saabas) contributions of one row in log-odds; the last entry is the bias.

        Sums to :meth:`margin`. Raises ``RuntimeError`` when the booster's
        node statistics were unavailable or did not reproduce XGBoost's.
        """
        if self._mean is None:
            raise RuntimeError("path contributions unavailable for this booster")
        x = np.asarray(row, dtype=np.float32)
        out = np.zeros(self._n_features + 1, dtype=np.float64)
        node = self._roots
        out[-1] = float(self._base[0]) + float(self._mean[node].sum())
        for _ in range(self._depth):
            values = x[self._feature[node]]
            go_left = np.where(np.isnan(values), self._default_left[node],
                               values < self._threshold[node])
            child = np.where(go_left, self._left[node], self._right[node])
            split = self._is_split[node]
            np.add.at(out, self._feature[node][split],
                      self._mean[child][split] - self._mean[node][split])
            node = child
        return out

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
        return sigmoid32(self.margin(row))


def _node_means(lefts: np.ndarray, rights: np.ndarray, leaf_values: np.ndarray,
                hessians: np.ndarray) -> np.ndarray:
    """Hessian-weighted mean leaf value under every node of one tree (XGBoost's
    ``FillNodeMeanValues``): a leaf's own value; a split's children's means
    weighted by their hessian sums."""
    means = np.zeros(len(lefts), dtype=np.float64)

    def fill(node: int) -> float:
        if lefts[node] == -1:
            means[node] = leaf_values[node]
        else:
            left, right = int(lefts[node]), int(rights[node])
            means[node] = ((fill(left) * hessians[left] + fill(right) * hessians[right])
                           / hessians[node])
        return float(means[node])

    fill(0)
    return means


def _depth(lefts: np.ndarray, rights: np.ndarray) -> int:
    """Edges on the longest root-to-leaf path of one tree (node 0 is the root)."""
    depth, level = 0, [0]
    while True:
        children = [c for n in level for c in (lefts[n], rights[n]) if c != -1]
        if not children:
            return depth
        depth, level = depth + 1, children
