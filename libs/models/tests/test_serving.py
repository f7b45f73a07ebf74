"""Serving snapshots follow the registry's aliases and never half-swap."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtml_common.events import ModelEvent, ModelEventKind, utcnow
from rtml_features.definitions import FeatureSet
from rtml_localstack.testing import MlflowServer
from rtml_models import IntegrityError
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.river import RiverModel
from rtml_models.serving import ServingModels
from rtml_models.xgboost import XGBoostModel

pytestmark = pytest.mark.integration


def _event(name: str) -> ModelEvent:
    return ModelEvent(event_id="e1", kind=ModelEventKind.ALIAS_SET, model_name=name,
                      alias="champion", version="2", actor="test", occurred_at=utcnow())


def test_snapshots_follow_aliases(mlflow_server: MlflowServer, xgb_model: XGBoostModel,
                                  river_model: RiverModel, feature_set: FeatureSet,
                                  tmp_path: Path) -> None:
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    name = f"serve-{tmp_path.name}"
    registry.register(name, xgb_model, feature_set=feature_set)
    registry.register(name, river_model, feature_set=feature_set)
    serving = ServingModels(registry, name, workdir=tmp_path / "w")
    assert serving.refresh().describe() == {}  # no aliases yet: nothing served

    registry.set_alias(name, "champion", "1")
    registry.set_alias(name, "shadow-river", "2")
    first = serving.refresh()
    assert first.describe() == {"champion": "1", "shadow-river": "2"}
    assert first.champion is not None and first.champion.model.flavor == "xgboost"
    assert first.shadows["shadow-river"].model.flavor == "river"

    registry.set_alias(name, "champion", "2")
    assert serving.on_model_event(_event(name)) is True
    assert serving.current.describe() == {"champion": "2", "shadow-river": "2"}
    assert first.describe() == {"champion": "1", "shadow-river": "2"}  # old snapshot intact
    assert serving.on_model_event(_event("another-model")) is False

    champion_only = ServingModels(registry, name, with_shadows=False, workdir=tmp_path / "c")
    assert champion_only.refresh().describe() == {"champion": "2"}


def test_a_version_that_fails_to_load_leaves_the_old_snapshot_serving(
        mlflow_server: MlflowServer, xgb_model: XGBoostModel, feature_set: FeatureSet,
        tmp_path: Path) -> None:
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    name = f"broken-{tmp_path.name}"
    registry.register(name, xgb_model, feature_set=feature_set)
    bad = registry.register(name, xgb_model, feature_set=feature_set)
    registry.set_alias(name, "champion", "1")
    serving = ServingModels(registry, name, workdir=tmp_path / "w")
    serving.refresh()
    stored = registry.download(name, bad.version, tmp_path / "orig")
    (stored / "model.ubj").write_bytes(b"corrupted")
    assert bad.run_id is not None
    registry.client.log_artifacts(bad.run_id, str(stored), "model")
    registry.set_alias(name, "champion", bad.version)
    with pytest.raises(IntegrityError):
        serving.refresh()
    assert serving.current.describe() == {"champion": "1"}
