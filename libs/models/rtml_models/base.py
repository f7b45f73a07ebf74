"""The contract every servable model meets, whatever library trained it.

Consumers (the registry's validation gate, the scorer, the decision service)
only ever see :class:`ScoringModel`: rows of floats in the feature set's
order in, fraud probabilities out. Each flavor (XGBoost, River, ...) lives in
its own sub-package and says how it writes and reads its files; where the
files go and how they are checked is :mod:`rtml_models.artifact`'s job.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, final

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from rtml_models.calibration import Calibration

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
    * ``predict_one`` is the single-row path the request path uses.
    * Both return *calibrated* probabilities when the model carries a
      :class:`~rtml_models.calibration.Calibration` (:meth:`with_calibration`):
      the decision rules compare scores with fixed thresholds. They are
      final: flavors implement ``predict_raw`` (and ``predict_raw_one`` when
      the batch path has per-call overhead worth avoiding), and the
      calibration is applied here, once, for every flavor and every caller.
      ``predict`` and ``predict_one`` of the same row are equal bit for bit
      whenever ``predict_raw`` and ``predict_raw_one`` are.
    * ``write``/``read`` only handle the flavor's own files inside a directory;
      they are called through :func:`rtml_models.artifact.save_model` and
      :func:`~rtml_models.artifact.load_model`, which check integrity first
      (and store / restore the calibration beside the flavor's files).
    """

    #: Short name recorded in the manifest; selects the class on load.
    flavor: ClassVar[str]
    #: Set only through :meth:`with_calibration` (flavors' ``__init__`` need not know it).
    _calibration: Calibration | None = None

    @property
    @abstractmethod
    def feature_names(self) -> tuple[str, ...]:
        """The input columns, in order."""

    @abstractmethod
    def predict_raw(self, rows: F64) -> F64:
        """The model's own score for each row of a ``(n, k)`` array, uncalibrated."""

    def predict_raw_one(self, row: Sequence[float]) -> float:
        """The uncalibrated score of one row (default: a one-row batch)."""
        return float(self.predict_raw(np.asarray([row], dtype=np.float64))[0])

    @final
    def predict(self, rows: F64) -> F64:
        """P(fraud) for each row of a ``(n, k)`` array (calibrated if a calibration is set)."""
        scores = self.predict_raw(rows)
        calibration = self._calibration
        return scores if calibration is None else calibration.apply(scores)

    @final
    def predict_one(self, row: Sequence[float]) -> float:
        """P(fraud) for one row (calibrated if a calibration is set)."""
        score = self.predict_raw_one(row)
        calibration = self._calibration
        return score if calibration is None else calibration.apply_one(score)

    @property
    def calibration(self) -> Calibration | None:
        """The map ``predict`` applies to raw scores; None: raw scores are served."""
        return self._calibration

    def with_calibration(self, calibration: Calibration | None) -> Self:
        """This model serving ``calibration``-mapped scores (None: raw scores).

        Returns a shallow copy and leaves ``self`` as it was, so a model
        already serving never changes its scores under a reader. The copy
        shares the fitted state (booster, River estimator): use it *instead
        of* the original, e.g. ``model = model.with_calibration(cal)`` before
        saving or registering.
        """
        from rtml_models.calibration import Calibration

        if calibration is not None and not isinstance(calibration, Calibration):
            raise ModelError(f"expected a Calibration or None, got {type(calibration).__name__}")
        calibrated = copy.copy(self)
        calibrated._calibration = calibration
        return calibrated

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
