"""What one training run does: every choice in one frozen value.

The defaults reproduce the evaluation protocol on the default simulator data
(XGBoost, baseline features, train 2018-07-25..07-31, 7-day delay, 7-day
test), so ``TrainConfig(data=...)`` is the acceptance run. Every field is
logged to MLflow as a parameter, so a run can be repeated from its record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from rtml_features.baseline import default_feature_set
from rtml_monitoring.reference import DEFAULT_BINS
from rtml_training.selection.search import SelectionConfig
from rtml_training.split import SplitConfig

ModelKind = Literal["xgboost", "river"]
MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)
#: ``auto``: Platt scaling for XGBoost, none for River (an online model keeps learning, so a
#: map fixed at training time would go stale).
CalibrationKind = Literal["auto", "platt", "isotonic", "none"]
CALIBRATIONS: tuple[str, ...] = get_args(CalibrationKind)


@dataclass(frozen=True)
class TrainConfig:
    """One training run (see the module doc)."""

    data: Path
    model: ModelKind = "xgboost"
    #: Registered model name (also the MLflow experiment name unless ``experiment`` is set).
    name: str = "fraud-detector"
    #: Registered feature set; default ``RTML_FEATURE_SET``, else ``extended``.
    feature_set: str = field(default_factory=default_feature_set)
    split: SplitConfig = field(default_factory=SplitConfig)
    #: Prequential folds to evaluate (0 or 1: the main split only).
    folds: int = 0
    #: MLflow server; None trains and evaluates without logging anything.
    tracking_uri: str | None = None
    experiment: str | None = None
    register: bool = True
    #: XGBoost parameters on top of :data:`rtml_training.params.XGBOOST_DEFAULTS`
    #: (with a selection: fixed, the search varies the others).
    xgb_params: dict[str, Any] = field(default_factory=dict)
    #: River parameters on top of :data:`rtml_training.params.RIVER_DEFAULTS`.
    river_params: dict[str, Any] = field(default_factory=dict)
    #: Model selection (``rtml train --select``); None trains the given parameters.
    selection: SelectionConfig | None = None
    #: Calibration map fitted on validation weeks and kept inside the registered model.
    calibration: CalibrationKind = "auto"
    #: Validation folds the calibration map is fitted on when there is no selection
    #: (with one, its folds).
    calibration_folds: int = 4
    #: Cards an investigator checks per day (card precision@k).
    k: int = 100
    bins: int = DEFAULT_BINS
    #: Test rows kept as ``validation/holdout.parquet`` for the registry's gate.
    holdout_rows: int = 2_000
    seed: int = 0
    #: Extra tags for the MLflow run *and* the registered version (lineage of who asked for
    #: this model and why, e.g. the retrain worker's request and alert ids).
    tags: Mapping[str, str] = field(default_factory=dict)
    #: MLflow run name; None: ``<model>-<train_start>``.
    run_name: str | None = None

    def __post_init__(self) -> None:
        if self.model not in MODEL_KINDS:
            raise ValueError(f"model must be one of {MODEL_KINDS}, got {self.model!r}")
        if self.folds < 0:
            raise ValueError("folds must be >= 0")
        if self.k < 1 or self.holdout_rows < 0:
            raise ValueError("k must be >= 1 and holdout_rows >= 0")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, "
                             f"got {self.calibration!r}")
        if self.calibration_folds < 1:
            raise ValueError("calibration_folds must be >= 1")

    @property
    def model_params(self) -> dict[str, Any]:
        """The user's parameters for the model kind being trained."""
        return dict(self.xgb_params if self.model == "xgboost" else self.river_params)

    @property
    def calibration_method(self) -> str:
        """``platt``, ``isotonic`` or ``none`` (``auto`` resolved for the model kind)."""
        if self.calibration == "auto":
            return "platt" if self.model == "xgboost" else "none"
        return self.calibration

    @property
    def validation_folds(self) -> int:
        """Validation folds to build: the selection's, else the calibration's, else none."""
        if self.selection is not None:
            return self.selection.folds
        return self.calibration_folds if self.calibration_method != "none" else 0

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name

    @property
    def n_folds(self) -> int:
        """Splits evaluated: the main one plus ``folds - 1`` earlier ones."""
        return max(self.folds, 1)
