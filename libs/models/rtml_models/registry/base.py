"""The model registry contract: immutable versions, movable aliases, lineage.

Backends (one folder each, e.g. ``registry/mlflow``) store the versions;
everything above them — the training pipeline, the registry service's
validation gate and audit log, scorers and the decision service — speaks
only this interface. The contract:

* ``register`` stores a model's artifact (via :func:`rtml_models.artifact.save_model`)
  as a new version, and records its artifact digest and lineage in tags.
  A version's files and tags are never changed afterwards by rtml.
* Aliases (``champion``, ``challenger``, ``shadow-*`` ...) point at versions
  and are the only thing that moves. The backend only stores them; who may
  move them, after which checks, is the registry service's business.
* ``load`` verifies the artifact against the digest recorded at registration
  before deserialising anything.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rtml_features.definitions import FeatureSet
from rtml_models.base import ScoringModel

#: Tag names written at registration (``rtml.`` prefix keeps them apart from users' tags).
TAG_FLAVOR = "rtml.flavor"
TAG_DIGEST = "rtml.artifact_digest"
TAG_FEATURE_SET = "rtml.feature_set"
TAG_FEATURE_SET_VERSION = "rtml.feature_set_version"
TAG_DATA_FINGERPRINT = "rtml.data_fingerprint"
TAG_CODE_VERSION = "rtml.code_version"
TAG_PARENT_VERSION = "rtml.parent_version"


class RegistryError(Exception):
    """The registry backend refused or failed an operation."""


class NotFoundError(RegistryError):
    """No such model, version or alias."""


@dataclass(frozen=True)
class ModelVersion:
    """One immutable registered version and where it came from (its lineage)."""

    name: str
    version: str
    run_id: str | None
    source: str
    created_at: datetime
    aliases: tuple[str, ...]
    tags: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    description: str = ""

    @property
    def flavor(self) -> str | None:
        return self.tags.get(TAG_FLAVOR)

    @property
    def digest(self) -> str | None:
        return self.tags.get(TAG_DIGEST)

    @property
    def feature_set(self) -> str | None:
        return self.tags.get(TAG_FEATURE_SET)

    @property
    def feature_set_version(self) -> str | None:
        return self.tags.get(TAG_FEATURE_SET_VERSION)

    @property
    def data_fingerprint(self) -> str | None:
        return self.tags.get(TAG_DATA_FINGERPRINT)

    @property
    def code_version(self) -> str | None:
        return self.tags.get(TAG_CODE_VERSION)

    @property
    def parent_version(self) -> str | None:
        return self.tags.get(TAG_PARENT_VERSION)


@dataclass(frozen=True)
class RegisteredModel:
    """A model name, its aliases and its newest version."""

    name: str
    description: str
    aliases: dict[str, str]
    latest_version: str | None


class ModelRegistry(ABC):
    """Storage of model versions and aliases (see the module docstring for the contract)."""

    @abstractmethod
    def register(self, name: str, model: ScoringModel, *, feature_set: FeatureSet,
                 run_id: str | None = None, tags: Mapping[str, str] | None = None,
                 parent_version: str | None = None, description: str = "") -> ModelVersion:
        """Store ``model`` as the next version of ``name`` (created if new).

        ``run_id`` links the version to the training run that produced it (its
        params, metrics and artifacts); without one the backend creates a run
        to hold the artifact. ``parent_version`` records what an online
        model's checkpoint continued from.
        """

    @abstractmethod
    def list_models(self) -> list[RegisteredModel]:
        """Every registered model name."""

    @abstractmethod
    def list_versions(self, name: str) -> list[ModelVersion]:
        """Versions of ``name``, oldest first; NotFoundError if the model is unknown."""

    @abstractmethod
    def get_version(self, name: str, version: str) -> ModelVersion:
        """One version with its lineage; NotFoundError if unknown."""

    @abstractmethod
    def aliases(self, name: str) -> dict[str, str]:
        """Alias -> version of ``name``."""

    @abstractmethod
    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` at ``version`` (the version must exist)."""

    @abstractmethod
    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias``; NotFoundError if it isn't set."""

    @abstractmethod
    def download(self, name: str, version: str, directory: Path) -> Path:
        """Copy the version's artifact under ``directory``; returns the artifact folder."""

    def version_for_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` points at, or None."""
        version = self.aliases(name).get(alias)
        return None if version is None else self.get_version(name, version)

    def load(self, name: str, version: str, directory: Path) -> ScoringModel:
        """Download and load a version, verified against its registered digest."""
        from rtml_models.artifact import load_model

        info = self.get_version(name, version)
        if info.digest is None:
            raise RegistryError(
                f"{name} v{version} has no {TAG_DIGEST} tag: it was not registered by rtml"
            )
        return load_model(self.download(name, version, directory), expected_digest=info.digest)
