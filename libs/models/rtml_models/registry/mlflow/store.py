""":class:`~rtml_models.registry.base.ModelRegistry` on MLflow's model registry.

Mapping: a model name is an MLflow registered model; a version is an MLflow
model version whose ``source`` is the ``model`` artifact folder of a run
(the training run when there is one); rtml's lineage lives in the version's
``rtml.*`` tags; aliases are MLflow aliases. The artifact is our own layout
(:mod:`rtml_models.artifact`), not an MLflow flavor, so loading it needs
neither MLflow's pyfunc machinery nor pickle for XGBoost.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion as MlflowModelVersion
from mlflow.exceptions import MlflowException, RestException

from rtml_features.definitions import FeatureSet
from rtml_models.artifact import save_model
from rtml_models.base import ScoringModel
from rtml_models.registry.base import (
    TAG_DIGEST,
    TAG_FEATURE_SET,
    TAG_FEATURE_SET_VERSION,
    TAG_FLAVOR,
    TAG_PARENT_VERSION,
    ModelRegistry,
    ModelVersion,
    NotFoundError,
    RegisteredModel,
    RegistryError,
)

ARTIFACT_PATH = "model"
#: Experiment that holds runs created only to store a checkpoint's artifact.
CHECKPOINT_EXPERIMENT = "rtml-model-checkpoints"


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"} or (
        isinstance(exc, RestException) and "not found" in str(exc).lower()
    )


class MlflowRegistry(ModelRegistry):
    """Model versions and aliases on an MLflow server (``tracking_uri``)."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    @property
    def client(self) -> MlflowClient:
        """The MLflow client (for run-level reads such as params and artifacts)."""
        return self._client

    def _call(self, what: str, func, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return func(*args, **kwargs)
        except MlflowException as exc:
            if _not_found(exc):
                raise NotFoundError(f"{what}: not found") from exc
            raise RegistryError(f"{what}: {exc.message}") from exc

    def register(self, name: str, model: ScoringModel, *, feature_set: FeatureSet,
                 run_id: str | None = None, tags: Mapping[str, str] | None = None,
                 parent_version: str | None = None, description: str = "") -> ModelVersion:
        if run_id is None:
            run_id = self._checkpoint_run(name)
        with tempfile.TemporaryDirectory(prefix="rtml-model-") as tmp:
            manifest = save_model(model, tmp, feature_set=feature_set.name,
                                  feature_set_version=feature_set.version)
            self._call(f"log artifacts of run {run_id}", self._client.log_artifacts,
                       run_id, tmp, ARTIFACT_PATH)
        all_tags = dict(tags or {})
        all_tags.update({
            TAG_FLAVOR: model.flavor,
            TAG_DIGEST: manifest.digest,
            TAG_FEATURE_SET: feature_set.name,
            TAG_FEATURE_SET_VERSION: feature_set.version,
        })
        if parent_version is not None:
            all_tags[TAG_PARENT_VERSION] = parent_version
        try:
            self._client.get_registered_model(name)
        except MlflowException as exc:
            if not _not_found(exc):
                raise RegistryError(f"model {name}: {exc.message}") from exc
            self._call(f"create model {name}", self._client.create_registered_model, name)
        run = self._call(f"run {run_id}", self._client.get_run, run_id)
        created = self._call(
            f"register {name}", self._client.create_model_version, name,
            source=f"{run.info.artifact_uri}/{ARTIFACT_PATH}", run_id=run_id, tags=all_tags,
            description=description,
        )
        return self.get_version(name, str(created.version))

    def _checkpoint_run(self, name: str) -> str:
        experiment = self._client.get_experiment_by_name(CHECKPOINT_EXPERIMENT)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self._client.create_experiment(CHECKPOINT_EXPERIMENT))
        run = self._client.create_run(experiment_id, run_name=f"{name}-checkpoint")
        self._client.set_terminated(run.info.run_id)
        return str(run.info.run_id)

    def _version(self, raw: MlflowModelVersion) -> ModelVersion:
        metrics: dict[str, float] = {}
        if raw.run_id:
            try:
                metrics = dict(self._client.get_run(raw.run_id).data.metrics)
            except MlflowException:
                metrics = {}  # run deleted: the version still stands on its own tags
        return ModelVersion(
            name=raw.name,
            version=str(raw.version),
            run_id=raw.run_id or None,
            source=str(raw.source),
            created_at=datetime.fromtimestamp(raw.creation_timestamp / 1000, UTC),
            aliases=tuple(sorted(raw.aliases or ())),
            tags=dict(raw.tags or {}),
            metrics=metrics,
            description=raw.description or "",
        )

    def list_models(self) -> list[RegisteredModel]:
        models = self._call("list models", self._client.search_registered_models,
                            max_results=1000)
        result = []
        for model in models:
            latest = [int(v.version) for v in (model.latest_versions or [])]
            result.append(RegisteredModel(
                name=model.name, description=model.description or "",
                aliases={a: str(v) for a, v in (model.aliases or {}).items()},
                latest_version=str(max(latest)) if latest else None,
            ))
        return sorted(result, key=lambda m: m.name)

    def list_versions(self, name: str) -> list[ModelVersion]:
        self._call(f"model {name}", self._client.get_registered_model, name)
        raw = self._call(f"versions of {name}", self._client.search_model_versions,
                         filter_string=f"name = '{name}'", max_results=10_000)
        return sorted((self._version(v) for v in raw), key=lambda v: int(v.version))

    def get_version(self, name: str, version: str) -> ModelVersion:
        raw = self._call(f"{name} version {version}", self._client.get_model_version,
                         name, version)
        return self._version(raw)

    def aliases(self, name: str) -> dict[str, str]:
        model = self._call(f"model {name}", self._client.get_registered_model, name)
        return {alias: str(version) for alias, version in (model.aliases or {}).items()}

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.get_version(name, version)
        self._call(f"set {name}@{alias}", self._client.set_registered_model_alias,
                   name, alias, version)

    def delete_alias(self, name: str, alias: str) -> None:
        if alias not in self.aliases(name):
            raise NotFoundError(f"{name}@{alias}: not set")
        self._call(f"delete {name}@{alias}", self._client.delete_registered_model_alias,
                   name, alias)

    def download(self, name: str, version: str, directory: Path) -> Path:
        info = self.get_version(name, version)
        directory.mkdir(parents=True, exist_ok=True)
        try:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=info.source, dst_path=str(directory),
                tracking_uri=self.tracking_uri,
            )
        except MlflowException as exc:
            raise RegistryError(f"download {name} v{version}: {exc.message}") from exc
        return Path(path)
