"""A River estimator behind the :class:`~rtml_models.base.OnlineModel` contract.

River has no data-only format: an estimator's state is its Python object, so
it is stored with :mod:`pickle`. Unpickling runs code, which is why this
flavor sets ``requires_pinned_digest``: :func:`rtml_models.artifact.load_model`
opens ``river.pkl`` only after its sha256 matches the manifest and the
manifest matches the digest the registry recorded when the version was
registered. Only artifacts our own registry wrote are therefore ever loaded.

>>> model = RiverModel(default_online_model(), ("amount", "night"))
>>> model.learn_one([250.0, 1.0], True)
>>> model.updates
1
>>> 0.0 <= model.predict_one([250.0, 1.0]) <= 1.0
True
"""

from __future__ import annotations

import pickle
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import river
from river import compose, linear_model, optim, preprocessing
from river.base import Classifier

from rtml_models.base import F64, ModelError, OnlineModel

MODEL_FILE = "river.pkl"


def default_online_model() -> compose.Pipeline:
    """Standardised logistic regression: cheap per update and robust to drifting scales.

    Standardising online matters here: amounts and counts differ by orders of
    magnitude and their means move over time, which plain SGD on raw inputs
    handles badly.
    """
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(
        optimizer=optim.SGD(0.01)
    )


class RiverModel(OnlineModel):
    """A River binary classifier fed with rows in ``feature_names`` order."""

    flavor: ClassVar[str] = "river"
    requires_pinned_digest: ClassVar[bool] = True

    def __init__(self, estimator: Any, feature_names: Sequence[str], updates: int = 0) -> None:
        if not isinstance(estimator, Classifier | compose.Pipeline):
            raise ModelError(f"expected a River classifier, got {type(estimator).__name__}")
        if not feature_names:
            raise ModelError("a River model needs its feature names")
        self._estimator = estimator
        self._names = tuple(feature_names)
        self._updates = updates

    @property
    def estimator(self) -> Any:
        """The River estimator (read-only use; learn through :meth:`learn_one`)."""
        return self._estimator

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def updates(self) -> int:
        return self._updates

    def _as_dict(self, row: Sequence[float]) -> dict[Hashable, Any]:
        if len(row) != len(self._names):
            raise ModelError(
                f"river model expects {len(self._names)} features {list(self._names)}, "
                f"got {len(row)} values"
            )
        return {name: float(value) for name, value in zip(self._names, row, strict=True)}

    def predict_raw_one(self, row: Sequence[float]) -> float:
        probabilities = self._estimator.predict_proba_one(self._as_dict(row))
        return float(probabilities.get(True, 0.0))

    def predict_raw(self, rows: F64) -> F64:
        array = self.check_rows(rows)
        return np.fromiter((self.predict_raw_one(row) for row in array.tolist()),
                           dtype=np.float64, count=len(array))

    def learn_one(self, row: Sequence[float], is_fraud: bool) -> None:
        self._estimator.learn_one(self._as_dict(row), bool(is_fraud))
        self._updates += 1

    def write(self, directory: Path) -> list[str]:
        with (directory / MODEL_FILE).open("wb") as stream:
            pickle.dump(self._estimator, stream, protocol=pickle.HIGHEST_PROTOCOL)
        return [MODEL_FILE]

    @classmethod
    def read(cls, directory: Path, feature_names: tuple[str, ...],
             extra: Mapping[str, Any]) -> RiverModel:
        saved_with = extra.get("river_version")
        if saved_with is not None and saved_with.split(".")[:2] != river.__version__.split(".")[:2]:
            raise ModelError(
                f"{MODEL_FILE} was saved with river {saved_with}; this process has "
                f"{river.__version__} (pickled state is only portable within a minor version)"
            )
        with (directory / MODEL_FILE).open("rb") as stream:
            estimator = pickle.load(stream)  # digest-pinned, see module docstring
        return cls(estimator, feature_names, updates=int(extra.get("updates", 0)))

    def describe(self) -> dict[str, Any]:
        return {"river_version": river.__version__, "updates": self._updates,
                "estimator": str(self._estimator)}
