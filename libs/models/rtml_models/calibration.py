"""Calibration maps: a model's raw score in, a probability that means what it says out.

Why: the decision rules compare a score with fixed thresholds ("decline above
0.9"), which only works if a score of 0.9 means nine in ten such payments are
fraud. A booster trained on resampled or reweighted data, or an online model,
ranks well but its raw scores need not be frequencies. Training fits a
monotone map on a validation window and attaches it to the model
(:meth:`rtml_models.base.ScoringModel.with_calibration`); the artifact stores
it as ``calibration.json`` under the manifest's hashes, and every serving
path (``predict``, ``predict_one``) applies it.

Two forms:

* ``isotonic``: the piecewise-linear map through increasing thresholds ``x``
  and non-decreasing values ``y`` in [0, 1], flat beyond the ends — what
  scikit-learn's ``IsotonicRegression(out_of_bounds="clip")`` predicts from
  its ``X_thresholds_`` / ``y_thresholds_``.
* ``platt``: ``sigmoid(a * logit(clip(p, eps, 1 - eps)) + b)`` with ``a > 0``.

Both are monotone non-decreasing, so a calibrated model ranks exactly as the
raw one (AUC and precision at k are unchanged; ties can only appear on flat
isotonic steps).

:meth:`Calibration.apply` (batches, the scorer) and :meth:`Calibration.apply_one`
(one row, the decision API) run the same numpy code on the same float64
values, so their results are bit for bit equal: the two services must give
one vector one score (docs/features.md, "Decision API and scorer").

>>> cal = Calibration.isotonic([0.1, 0.5, 0.9], [0.0, 0.2, 1.0])
>>> [round(float(v), 9) for v in cal.apply(np.array([0.0, 0.3, 0.5, 0.7, 1.0]))]
[0.0, 0.1, 0.2, 0.6, 1.0]
>>> cal.apply_one(0.3) == float(cal.apply(np.array([0.3]))[0])
True
>>> Calibration.from_dict(cal.to_dict()) == cal
True
>>> platt = Calibration.platt(a=1.0, b=0.0)       # the identity on (0, 1)
>>> round(platt.apply_one(0.25), 9)
0.25
>>> stored = {"method": "isotonic", "x": [0.5, 0.1], "y": [0.0, 1.0]}
>>> Calibration.from_dict(stored)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
rtml_models.base.ModelError: calibration: isotonic thresholds x must be strictly increasing ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from rtml_models.base import F64, ModelError

#: The artifact file a calibration is stored in (see :mod:`rtml_models.artifact`).
CALIBRATION_FILE = "calibration.json"
#: Most isotonic points accepted: a map is a few hundred points in practice, and
#: an artifact must not make every serving process hold an unbounded table.
MAX_POINTS = 10_000
#: Platt clips raw scores to ``[eps, 1 - eps]`` before the logit (0 and 1 have none).
PLATT_EPSILON = 1e-12
#: Bump when the stored form changes incompatibly.
DICT_VERSION = 1

Method = Literal["isotonic", "platt"]
METHODS: tuple[Method, ...] = ("isotonic", "platt")


def _error(message: str) -> ModelError:
    return ModelError(f"calibration: {message}")


def _finite_float(value: object, what: str) -> float:
    """``value`` as a finite float; refuses bools, strings and None (JSON content is untrusted)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise _error(f"{what} must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise _error(f"{what} must be finite, got {number!r}")
    return number


def _floats(values: object, what: str) -> tuple[float, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
        raise _error(f"{what} must be a list of numbers, got {type(values).__name__}")
    if len(values) > MAX_POINTS:
        raise _error(f"{what} has {len(values)} points; at most {MAX_POINTS} are accepted")
    return tuple(_finite_float(v, f"{what}[{i}]") for i, v in enumerate(values))


@dataclass(frozen=True)
class Calibration:
    """A validated, immutable monotone map from raw scores to probabilities.

    Build one with :meth:`isotonic`, :meth:`platt`, :func:`fit_isotonic`,
    :func:`fit_platt` or :meth:`from_dict`; the constructor checks everything
    and raises :class:`~rtml_models.base.ModelError` naming the fault, so an
    instance is always safe to apply.
    """

    method: Method
    #: Isotonic thresholds (strictly increasing) and values (non-decreasing, in [0, 1]).
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    #: Platt slope (> 0) and intercept on the logit of the raw score.
    a: float = 1.0
    b: float = 0.0
    #: Platt's clip of raw scores before the logit.
    eps: float = PLATT_EPSILON
    _x: F64 = field(init=False, repr=False, compare=False)
    _y: F64 = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise _error(f"unknown method {self.method!r}; known: {list(METHODS)}")
        x = _floats(self.x, "x")
        y = _floats(self.y, "y")
        a = _finite_float(self.a, "a")
        b = _finite_float(self.b, "b")
        eps = _finite_float(self.eps, "eps")
        if self.method == "isotonic":
            _check_isotonic(x, y)
        else:
            if x or y:
                raise _error("a platt calibration has no x/y points")
            if a <= 0.0:
                raise _error(f"platt slope a must be > 0 (a monotone map keeps the model's "
                             f"ranking), got {a!r}")
            if not 0.0 < eps < 0.5:
                raise _error(f"platt eps must be in (0, 0.5), got {eps!r}")
        for name, value in (("x", x), ("y", y), ("a", a), ("b", b), ("eps", eps)):
            object.__setattr__(self, name, value)
        for name, values in (("_x", x), ("_y", y)):
            array = np.asarray(values, dtype=np.float64)
            array.flags.writeable = False
            object.__setattr__(self, name, array)

    @classmethod
    def isotonic(cls, x: Sequence[float] | npt.ArrayLike,
                 y: Sequence[float] | npt.ArrayLike) -> Calibration:
        """The piecewise-linear map through ``(x[i], y[i])``, flat beyond the ends."""
        return cls("isotonic", x=tuple(np.asarray(x, dtype=np.float64).tolist()),
                   y=tuple(np.asarray(y, dtype=np.float64).tolist()))

    @classmethod
    def platt(cls, a: float, b: float, eps: float = PLATT_EPSILON) -> Calibration:
        """``sigmoid(a * logit(clip(p, eps, 1 - eps)) + b)``."""
        return cls("platt", a=a, b=b, eps=eps)

    @property
    def points(self) -> int:
        """Isotonic points, or 2 (``a``, ``b``) for Platt: the size recorded in the manifest."""
        return len(self.x) if self.method == "isotonic" else 2

    def apply(self, scores: npt.ArrayLike) -> F64:
        """Calibrated probabilities of raw ``scores`` (any shape; NaN stays NaN)."""
        raw = np.ascontiguousarray(scores, dtype=np.float64)
        if self.method == "isotonic":
            mapped = np.asarray(np.interp(raw, self._x, self._y), dtype=np.float64)
            # a NaN raw score is a broken model: keep it visible (np.interp maps
            # it to y[0] when there is a single point)
            return np.where(np.isnan(raw), raw, mapped)
        clipped = np.clip(raw, self.eps, 1.0 - self.eps)
        z = self.a * (np.log(clipped) - np.log1p(-clipped)) + self.b
        with np.errstate(over="ignore"):  # exp(-z) -> inf gives the right limit, 0
            return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)

    def apply_one(self, score: float) -> float:
        """The calibrated probability of one raw score.

        Runs :meth:`apply` on a one-element array rather than a scalar
        formula: numpy's vector loops and the C library's scalar functions
        may differ in the last bit, and the decision API (one row) and the
        scorer (batches) must agree exactly.
        """
        return float(self.apply(np.array([score], dtype=np.float64))[0])

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready stored form (floats round-trip exactly through ``json``)."""
        if self.method == "isotonic":
            return {"version": DICT_VERSION, "method": "isotonic",
                    "x": list(self.x), "y": list(self.y)}
        return {"version": DICT_VERSION, "method": "platt", "a": self.a, "b": self.b,
                "eps": self.eps}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """Rebuild from :meth:`to_dict`'s form; a ModelError names anything wrong."""
        if not isinstance(data, Mapping):
            raise _error(f"expected a JSON object, got {type(data).__name__}")
        version = data.get("version", DICT_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version > DICT_VERSION:
            raise _error(f"stored form version {version!r}; this rtml reads up to "
                         f"{DICT_VERSION}")
        method = data.get("method")
        allowed = {"isotonic": {"x", "y"}, "platt": {"a", "b", "eps"}}
        if method not in allowed:
            raise _error(f"unknown method {method!r}; known: {list(METHODS)}")
        unknown = set(data) - allowed[method] - {"version", "method"}
        if unknown:
            raise _error(f"unexpected keys {sorted(unknown)} for method {method!r}")
        if method == "isotonic":
            missing = allowed[method] - set(data)
            if missing:
                raise _error(f"isotonic calibration lacks {sorted(missing)}")
            return cls("isotonic", x=_floats(data["x"], "x"), y=_floats(data["y"], "y"))
        if not {"a", "b"} <= set(data):
            raise _error(f"platt calibration lacks {sorted({'a', 'b'} - set(data))}")
        return cls("platt", a=data["a"], b=data["b"], eps=data.get("eps", PLATT_EPSILON))

    def describe(self) -> dict[str, Any]:
        """Facts recorded in the manifest's ``extra``: method and number of points."""
        return {"method": self.method, "points": self.points}


def _check_isotonic(x: tuple[float, ...], y: tuple[float, ...]) -> None:
    if not x:
        raise _error("an isotonic calibration needs at least one point")
    if len(x) != len(y):
        raise _error(f"isotonic x has {len(x)} points but y has {len(y)}")
    for i in range(1, len(x)):
        if not x[i] > x[i - 1]:
            raise _error(f"isotonic thresholds x must be strictly increasing "
                         f"(x[{i}] = {x[i]!r} after x[{i - 1}] = {x[i - 1]!r})")
        if y[i] < y[i - 1]:
            raise _error(f"isotonic values y must be non-decreasing "
                         f"(y[{i}] = {y[i]!r} after y[{i - 1}] = {y[i - 1]!r})")
    for i, value in enumerate(y):
        if not 0.0 <= value <= 1.0:
            raise _error(f"isotonic values must be probabilities in [0, 1], y[{i}] = {value!r}")


def _training_data(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[F64, F64]:
    """1-D finite scores and 0/1 labels of equal length with both classes present."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    t = np.asarray(labels, dtype=np.float64).reshape(-1)
    if len(s) != len(t):
        raise _error(f"{len(s)} scores but {len(t)} labels")
    if not np.all(np.isfinite(s)):
        raise _error(f"{int((~np.isfinite(s)).sum())} scores are not finite")
    if not np.all((t == 0.0) | (t == 1.0)):
        raise _error("labels must be 0/1 (or booleans)")
    positives = int(t.sum())
    if positives == 0 or positives == len(t):
        raise _error(f"fitting needs both classes; got {positives} positives in {len(t)} rows")
    return s, t


def fit_isotonic(scores: npt.ArrayLike, labels: npt.ArrayLike) -> Calibration:
    """The isotonic map of ``labels`` on ``scores`` (scikit-learn's IsotonicRegression).

    scikit-learn is imported here, not at module level: serving processes
    apply calibrations but never fit them, and rtml-models does not declare it
    (rtml-training does). Raises ModelError if the fit needs more than
    :data:`MAX_POINTS` points (bin the scores or use :func:`fit_platt`).
    """
    from sklearn.isotonic import IsotonicRegression

    s, t = _training_data(scores, labels)
    regression = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True,
                                    out_of_bounds="clip").fit(s, t)
    x = np.asarray(regression.X_thresholds_, dtype=np.float64)
    y = np.clip(np.asarray(regression.y_thresholds_, dtype=np.float64), 0.0, 1.0)
    if len(x) > MAX_POINTS:
        raise _error(f"the isotonic fit has {len(x)} points, more than the {MAX_POINTS} "
                     "accepted; bin the scores or use platt")
    return Calibration.isotonic(x, y)


def fit_platt(scores: npt.ArrayLike, labels: npt.ArrayLike, *,
              eps: float = PLATT_EPSILON, max_iterations: int = 100) -> Calibration:
    """Platt scaling on the logit of ``scores``, fitted by Newton's method (numpy only).

    Uses Platt's smoothed targets (``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)``)
    so perfectly separated scores still give a finite fit, and a backtracking
    line search (Lin, Lin & Weng 2007). Raises ModelError if the fitted slope is
    not positive: the scores then rank frauds no better than chance and no
    monotone map can turn them into probabilities.
    """
    s, t = _training_data(scores, labels)
    clipped = np.clip(s, eps, 1.0 - eps)
    f = np.log(clipped) - np.log1p(-clipped)
    positives = float(t.sum())
    negatives = float(len(t) - positives)
    target = np.where(t == 1.0, (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0))

    def loss(a: float, b: float) -> float:
        z = a * f + b
        return float(np.sum(np.logaddexp(0.0, z) - target * z))

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(max_iterations):
        p = 1.0 / (1.0 + np.exp(-(a * f + b)))
        residual, weight = p - target, p * (1.0 - p)
        gradient = np.array([np.dot(residual, f), residual.sum()])
        hessian = np.array([[np.dot(weight, f * f), np.dot(weight, f)],
                            [np.dot(weight, f), weight.sum()]]) + 1e-12 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        while size > 1e-10:
            a_new, b_new = a - size * float(step[0]), b - size * float(step[1])
            candidate = loss(a_new, b_new)
            if candidate <= current:
                break
            size /= 2.0
        else:
            break  # no decrease along the Newton direction: at the optimum
        converged = abs(a_new - a) + abs(b_new - b) < 1e-12
        a, b, current = a_new, b_new, candidate
        if converged:
            break
    if not (math.isfinite(a) and math.isfinite(b)) or a <= 0.0:
        raise _error(f"the platt fit has slope a = {a!r}: the scores do not rank frauds "
                     "above legitimate rows, so they cannot be calibrated")
    return Calibration.platt(a, b, eps)
