"""The MLflow backend against a real MLflow server (fixture), per the registry contract."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from rtml_features.definitions import FeatureSet
from rtml_localstack.testing import MlflowServer
from rtml_models import IntegrityError
from rtml_models.registry import NotFoundError
from rtml_models.registry.base import TAG_DATA_FINGERPRINT
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.river import RiverModel
from rtml_models.xgboost import XGBoostModel

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(mlflow_server: MlflowServer) -> MlflowRegistry:
    return MlflowRegistry(mlflow_server.tracking_uri)


def _unique(prefix: str, tmp_path: Path) -> str:
    return f"{prefix}-{tmp_path.name}"


def test_register_records_lineage_and_loads_verified(
        registry: MlflowRegistry, xgb_model: XGBoostModel, feature_set: FeatureSet,
        rows: np.ndarray, tmp_path: Path) -> None:
    name = _unique("xgb", tmp_path)
    mlflow.set_tracking_uri(registry.tracking_uri)
    with mlflow.start_run() as run:
        mlflow.log_metric("ap", 0.64)
    version = registry.register(name, xgb_model, feature_set=feature_set,
                                run_id=run.info.run_id, tags={TAG_DATA_FINGERPRINT: "abc"})
    assert version.version == "1" and version.run_id == run.info.run_id
    assert version.flavor == "xgboost" and version.feature_set == "tiny"
    assert version.feature_set_version == feature_set.version
    assert version.data_fingerprint == "abc" and version.metrics == {"ap": 0.64}
    loaded = registry.load(name, "1", tmp_path / "dl")
    np.testing.assert_array_equal(loaded.predict(rows), xgb_model.predict(rows))
    assert [m.name for m in registry.list_models() if m.name == name] == [name]


def test_aliases_move_between_versions(registry: MlflowRegistry, xgb_model: XGBoostModel,
                                       feature_set: FeatureSet, tmp_path: Path) -> None:
    name = _unique("alias", tmp_path)
    for _ in range(2):
        registry.register(name, xgb_model, feature_set=feature_set)
    registry.set_alias(name, "champion", "1")
    registry.set_alias(name, "champion", "2")
    registry.set_alias(name, "shadow", "1")
    assert registry.aliases(name) == {"champion": "2", "shadow": "1"}
    champion = registry.version_for_alias(name, "champion")
    assert champion is not None and champion.aliases == ("champion",)
    assert [v.version for v in registry.list_versions(name)] == ["1", "2"]
    registry.delete_alias(name, "shadow")
    assert registry.version_for_alias(name, "shadow") is None
    with pytest.raises(NotFoundError):
        registry.delete_alias(name, "shadow")
    with pytest.raises(NotFoundError):
        registry.set_alias(name, "champion", "9")
    with pytest.raises(NotFoundError):
        registry.list_versions(_unique("nope", tmp_path))


def test_river_checkpoints_are_versions_with_a_parent(
        registry: MlflowRegistry, river_model: RiverModel, feature_set: FeatureSet,
        rows: np.ndarray, tmp_path: Path) -> None:
    name = _unique("river", tmp_path)
    first = registry.register(name, river_model, feature_set=feature_set)
    restored = registry.load(name, first.version, tmp_path / "a")
    assert isinstance(restored, RiverModel)
    for row in rows[:50]:
        restored.learn_one(row, bool(row[0] > 150))
    second = registry.register(name, restored, feature_set=feature_set,
                               parent_version=first.version)
    assert second.parent_version == "1" and second.run_id  # a checkpoint run holds it
    again = registry.load(name, second.version, tmp_path / "b")
    assert isinstance(again, RiverModel) and again.updates == river_model.updates + 50


def test_a_tampered_artifact_in_the_store_is_refused(
        registry: MlflowRegistry, river_model: RiverModel, feature_set: FeatureSet,
        tmp_path: Path, mlflow_server: MlflowServer) -> None:
    name = _unique("tamper", tmp_path)
    version = registry.register(name, river_model, feature_set=feature_set)
    stored = registry.download(name, version.version, tmp_path / "orig")
    (stored / "river.pkl").write_bytes(b"swapped")
    # Re-upload over the original artifact, as someone with store access could.
    assert version.run_id is not None
    registry.client.log_artifacts(version.run_id, str(stored), "model")
    with pytest.raises(IntegrityError):
        registry.load(name, version.version, tmp_path / "again")
