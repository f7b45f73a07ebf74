"""The champion's reference distributions, fetched from the model registry.

The baseline of drift is what the *serving* model was trained on: training
logs ``reference/distributions.json`` (per-feature and score histograms, see
:mod:`rtml_monitoring.reference`) to the MLflow run of every version it
registers. So: champion alias -> version -> its run id -> that run artifact.

A champion without a training run or without the artifact (e.g. a version
registered by hand) cannot be monitored: :class:`ReferenceUnavailable` says
which one and why, and the caller keeps what it had (or keeps waiting).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from rtml_models.aliases import CHAMPION
from rtml_models.registry.base import ModelRegistry, NotFoundError
from rtml_monitoring.reference import ReferenceDistributions

#: Where training puts the reference in a version's run (rtml_training.mlflow_logging).
REFERENCE_ARTIFACT = "reference/distributions.json"


class ReferenceUnavailable(RuntimeError):
    """The champion exists but its reference distributions cannot be read."""


@dataclass(frozen=True)
class ChampionReference:
    """A champion version and the reference distributions of its training run."""

    model_name: str
    version: str
    run_id: str
    reference: ReferenceDistributions

    def describe(self) -> str:
        ref = self.reference
        return (f"{self.model_name} v{self.version} (run {self.run_id}; {len(ref.features)} "
                f"features{' + score' if ref.score is not None else ''}, feature set "
                f"{ref.feature_set or '?'} {ref.feature_set_version or ''})").rstrip()


def champion_version(registry: ModelRegistry, model_name: str) -> str | None:
    """The version the champion alias points at, or None (no alias, or no such model yet)."""
    try:
        return registry.aliases(model_name).get(CHAMPION)
    except NotFoundError:
        return None


def download_reference(tracking_uri: str, run_id: str) -> ReferenceDistributions:
    """Read ``reference/distributions.json`` of MLflow run ``run_id``."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="rtml-drift-") as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=tmp,
                tracking_uri=tracking_uri)
        except Exception as exc:  # MlflowException or an OSError: the reason is in the message
            raise ReferenceUnavailable(
                f"run {run_id} has no readable {REFERENCE_ARTIFACT}: {exc}") from exc
        text = Path(path).read_bytes()
    try:
        return ReferenceDistributions.from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise ReferenceUnavailable(f"run {run_id}: {REFERENCE_ARTIFACT} is malformed: "
                                   f"{exc!r}") from exc


def load_champion_reference(registry: ModelRegistry, tracking_uri: str, model_name: str,
                            version: str) -> ChampionReference:
    """The reference of ``model_name`` ``version`` (the champion's, by the caller's lookup)."""
    info = registry.get_version(model_name, version)
    if info.run_id is None:
        raise ReferenceUnavailable(f"{model_name} v{version} has no training run, so no "
                                   f"{REFERENCE_ARTIFACT}")
    return ChampionReference(model_name, version, info.run_id,
                             download_reference(tracking_uri, info.run_id))
