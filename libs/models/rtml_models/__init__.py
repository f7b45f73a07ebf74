"""Models as rtml stores, loads and serves them.

One small contract (:class:`rtml_models.base.ScoringModel`) with one folder
per flavor (``xgboost/``, ``river/``), a self-describing, integrity-checked
artifact layout (:mod:`rtml_models.artifact`), and the registry contract with
its MLflow backend (``registry/``). The training pipeline writes through it,
and the registry's gate, the scorer and the decision service load through it,
so a model is read the same way everywhere. A model may carry a
:class:`~rtml_models.calibration.Calibration` (raw score -> probability),
stored in its artifact and applied by every ``predict`` / ``predict_one``.
"""

from rtml_models.artifact import ModelManifest, load_model, save_model
from rtml_models.base import IntegrityError, ModelError, OnlineModel, ScoringModel
from rtml_models.calibration import Calibration, fit_isotonic, fit_platt

__all__ = [
    "Calibration",
    "IntegrityError",
    "ModelError",
    "ModelManifest",
    "OnlineModel",
    "ScoringModel",
    "fit_isotonic",
    "fit_platt",
    "load_model",
    "save_model",
]
