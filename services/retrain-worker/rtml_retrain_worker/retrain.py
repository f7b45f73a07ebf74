"""One retrain: archive -> point-in-time training set -> rtml_training -> registry -> shadow.

The model is trained, evaluated, logged and registered by
:func:`rtml_training.pipeline.train` exactly as ``rtml train`` does (same
XGBoost trainer, metrics, reference distributions, holdout artifact), on the
frames :func:`.training_set.build_dataset` makes from the archive. The run and
the version carry lineage tags naming the requests and alerts that asked for
it and the label time it was trained as of; then the registry service is
asked to make the version the ``challenger`` (gate included).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rtml_common.events import RetrainRequest
from rtml_features.baseline import default_feature_set, get_feature_set
from rtml_retrain_worker import ACTOR
from rtml_retrain_worker.archive import Archive
from rtml_retrain_worker.challenger import AliasResult, RegistryClient
from rtml_retrain_worker.plan import Ready
from rtml_retrain_worker.training_set import build_dataset
from rtml_training.config import CalibrationKind, TrainConfig
from rtml_training.pipeline import train
from rtml_training.result import TrainResult
from rtml_training.selection.search import SelectionConfig

logger = logging.getLogger(__name__)

TAG_REQUEST_IDS = "rtml.retrain.request_ids"
TAG_ALERT_IDS = "rtml.retrain.alert_ids"
TAG_REASON = "rtml.retrain.reason"
TAG_AS_OF = "rtml.retrain.labels_as_of"
TAG_TRIGGER = "rtml.retrain.trigger"
#: MLflow refuses longer tag values.
MAX_TAG = 5000


@dataclass(frozen=True)
class TrainingJob:
    """What one training needs besides the archive: the burst and the planned split."""

    model_name: str
    requests: tuple[RetrainRequest, ...]
    plan: Ready
    feature_set: str = field(default_factory=default_feature_set)
    tracking_uri: str | None = None
    experiment: str | None = None
    xgb_params: tuple[tuple[str, object], ...] = ()
    holdout_rows: int = 2000
    #: Model selection (off by default so the loop stays fast) and the calibration kind.
    selection: SelectionConfig | None = None
    calibration: CalibrationKind = "auto"

    @property
    def request_ids(self) -> list[str]:
        return [r.request_id for r in self.requests]

    @property
    def alert_ids(self) -> list[str]:
        return sorted({a for r in self.requests for a in r.alert_ids})

    def tags(self) -> dict[str, str]:
        """Lineage for the run and the version."""
        reasons = "; ".join(dict.fromkeys(r.reason for r in self.requests))
        return {k: v[:MAX_TAG] for k, v in {
            TAG_REQUEST_IDS: ",".join(self.request_ids),
            TAG_ALERT_IDS: ",".join(self.alert_ids),
            TAG_REASON: reasons,
            TAG_AS_OF: self.plan.as_of.astimezone(UTC).isoformat(),
            TAG_TRIGGER: ACTOR,
        }.items()}


@dataclass(frozen=True)
class RetrainOutcome:
    """What a job did: the result (registered), and how the alias change went."""

    result: TrainResult
    version: str
    alias: AliasResult


def train_challenger(job: TrainingJob, archive: Archive) -> TrainResult:
    """Build the training set and run the pipeline (registering when a tracking URI is set)."""
    feature_set = get_feature_set(job.feature_set)
    config = TrainConfig(data=archive.root, name=job.model_name, feature_set=job.feature_set,
                         split=job.plan.split, tracking_uri=job.tracking_uri,
                         experiment=job.experiment, xgb_params=dict(job.xgb_params),
                         holdout_rows=job.holdout_rows, tags=job.tags(),
                         selection=job.selection, calibration=job.calibration,
                         run_name=f"retrain-{job.plan.split.train_start}-"
                                  f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}")
    dataset = build_dataset(archive, job.plan.split, feature_set, job.plan.as_of,
                            validation_folds=config.validation_folds)
    logger.info("training set: %d transactions %s..%s, %d labelled fraud, as of %s",
                len(dataset), dataset.day.min().date() if len(dataset) else "-",
                dataset.day.max().date() if len(dataset) else "-", int(dataset.is_fraud.sum()),
                job.plan.as_of.isoformat())
    return train(config, dataset=dataset)


def shadow_reason(job: TrainingJob, result: TrainResult) -> str:
    """The audit log's reason for the alias change: requests, alerts, split and metrics."""
    m = result.metrics
    alerts = ", ".join(job.alert_ids) or "none"
    return (f"retrain for request(s) {', '.join(job.request_ids)} (alerts: {alerts}); "
            f"{job.plan.split.describe()}; AUC {m.auc:.3f}, AP {m.ap:.3f}, "
            f"CP@{m.k} {m.cp_at_k:.3f}")[:2000]


def retrain(job: TrainingJob, archive: Archive, registry: RegistryClient) -> RetrainOutcome:
    """Train, register, and ask for the ``challenger`` alias; raises if training fails."""
    result = train_challenger(job, archive)
    if result.model_version is None:
        raise RuntimeError("the pipeline registered no version (no tracking URI?)")
    version = result.model_version.version
    alias = registry.set_alias(job.model_name, version, shadow_reason(job, result), ACTOR)
    return RetrainOutcome(result, version, alias)
