"""What a training run produced, in one value the CLI, the logger and tests read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from rtml_features.definitions import FeatureSet
from rtml_models.base import ScoringModel
from rtml_models.registry.base import ModelVersion
from rtml_monitoring.reference import ReferenceDistributions
from rtml_training.calibration_report import CalibrationReport
from rtml_training.config import TrainConfig
from rtml_training.fingerprint import Fingerprint
from rtml_training.metrics import Metrics
from rtml_training.published import Row, Targets, targets_for
from rtml_training.selection.search import SearchResult
from rtml_training.split import Split, SplitConfig


@dataclass(frozen=True)
class SplitSummary:
    """Sizes and fraud rates of one split (logged; the row positions are not)."""

    config: SplitConfig
    train_rows: int
    test_rows: int
    train_frauds: int
    test_frauds: int
    removed_known: int
    known_cards: int

    @property
    def train_fraud_rate(self) -> float:
        return self.train_frauds / self.train_rows if self.train_rows else 0.0

    @property
    def test_fraud_rate(self) -> float:
        return self.test_frauds / self.test_rows if self.test_rows else 0.0

    @classmethod
    def of(cls, split: Split, frame: pd.DataFrame) -> SplitSummary:
        fraud = frame["is_fraud"].to_numpy(dtype=bool)
        return cls(config=split.config, train_rows=len(split.train), test_rows=len(split.test),
                   train_frauds=int(fraud[split.train].sum()),
                   test_frauds=int(fraud[split.test].sum()),
                   removed_known=split.removed_known, known_cards=split.known_cards)


@dataclass(frozen=True)
class TrainResult:
    """Everything a run made; ``run_id`` / ``model_version`` only when logged / registered."""

    config: TrainConfig
    feature_set: FeatureSet
    model: ScoringModel
    model_params: dict[str, Any]
    metrics: Metrics
    split: SplitSummary
    #: Metrics of prequential folds 0..n-1 (fold 0 is the main split); empty without folds.
    fold_metrics: tuple[Metrics, ...]
    fold_splits: tuple[SplitSummary, ...]
    reference: ReferenceDistributions
    fingerprint: Fingerprint
    comparison: tuple[Row, ...]
    #: Sample of test rows (features in order, is_fraud, transaction_id) for the registry gate.
    holdout: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    code_version: str = ""
    run_id: str | None = None
    run_url: str | None = None
    model_version: ModelVersion | None = None
    #: Model selection: the registered family's search first, then comparison families.
    selection: tuple[SearchResult, ...] = ()
    #: Raw vs calibrated scores on the test period (None without calibration).
    calibration: CalibrationReport | None = None

    @property
    def targets(self) -> Targets:
        """The acceptance targets of this kind of run (meaningful for XGBoost on the default
        data): plain training, or selection on the baseline set or a richer one."""
        return targets_for(bool(self.selection), self.feature_set.name)

    @property
    def targets_met(self) -> dict[str, bool]:
        return self.targets.check(self.metrics)
