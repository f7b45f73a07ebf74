"""The contract every servable model meets, whatever library trained it.

Consumers (the registry's validation gate, the scorer, the decision service)
only ever see :class:`ScoringModel`: rows of floats in the feature set's
order in, fraud probabilities out. Each flavor (XGBoost, River, ...) lives in
its own sub-package and says how it writes and reads its files; where the
files go and how they are checked is :mod:`rtml_models.artifact`'s job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


class ModelError(Exception):
    """A model artifact can't be read or used (bad format, unknown flavor, wrong shape)."""


class IntegrityError(ModelError):
    """An artifact's bytes differ from what was recorded when it was saved or registered."""


class ScoringModel(ABC):
    """A binary fraud model: feature rows in, P(fraud) out.

    Contract:

    * ``feature_names`` is the input order; callers build rows in that order
      (the registry checks it against the feature set before serving).
    * ``predict`` takes a 2-D float array ``(n, len(feature_names))`` and
      returns ``n`` probabilities; it never mutates the model, so one
      instance may serve concurrent readers.
    * ``predict_one`` is the single-row path the request path uses; flavors
      override it when the batch path has per-call overhead worth avoiding.
    * ``write``/``read`` only handle the flavor's own files inside a directory;
      they are called through :func:`rtml_models.artifact.save_model` and
      :func:`~rtml_models.artifact.load_model`, which check integrity first.
    """

    #: Short name recorded in the manifest; selects the class on load.
    flavor: ClassVar[str]

    @property
    @abstractmethod
    def feature_names(self) -> tuple[str, ...]:
        """The input columns, in order."""

    @abstractmethod
    def predict(self, rows: F64) -> F64:
        """P(fraud) for each row of a ``(n, k)`` array."""

    def predict_one(self, row: Sequence[float]) -> float:
        """P(fraud) for one row (default: a one-row batch)."""
        return float(self.predict(np.asarray([row], dtype=np.float64))[0])

    @abstractmethod
    def write(self, directory: Path) -> list[str]:
        """Write the flavor's files into ``directory``; return their names."""

    @classmethod
    @abstractmethod
    def read(cls, directory: Path, feature_names: tuple[str, ...],
             extra: Mapping[str, Any]) -> ScoringModel:
        """Rebuild the model from files already integrity-checked by the caller."""

    def describe(self) -> dict[str, Any]:
        """Flavor-specific facts worth recording beside the model (manifest ``extra``)."""
        return {}

    def check_rows(self, rows: F64) -> F64:
        """``rows`` as a 2-D float64 array of the right width, or a precise ModelError."""
        array = np.asarray(rows, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != len(self.feature_names):
            raise ModelError(
                f"{self.flavor} model expects rows of {len(self.feature_names)} features "
                f"{list(self.feature_names)}, got an array of shape {array.shape}"
            )
        return array


class OnlineModel(ScoringModel):
    """A model that keeps learning from labels after deployment (e.g. River).

    ``updates`` counts the labels it has learned from, so a checkpoint says
    how far it got; checkpoints are registered as new versions (see
    :meth:`rtml_models.registry.base.ModelRegistry.register`) with their parent
    version as lineage.
    """

    @property
    @abstractmethod
    def updates(self) -> int:
        """Labels learned since the model was created."""

    @abstractmethod
    def learn_one(self, row: Sequence[float], is_fraud: bool) -> None:
        """Learn from one labelled row (test-then-train: score it first)."""
