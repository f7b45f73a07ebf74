"""The local MLflow server as a model registry: log, register, alias, load."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from rtml_localstack.testing import MlflowServer

pytestmark = pytest.mark.integration


def test_register_model_set_champion_alias_and_load_it(mlflow_server: MlflowServer) -> None:
    mlflow = pytest.importorskip("mlflow")
    xgb = pytest.importorskip("xgboost")
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(mlflow_server.tracking_uri)
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(7)
    features = rng.normal(size=(200, 3))
    labels = (features[:, 0] + 0.1 * features[:, 1] > 0).astype(int)
    model = xgb.XGBClassifier(n_estimators=8, max_depth=2).fit(features, labels)

    mlflow.set_experiment(f"localstack-{name}")
    with mlflow.start_run():
        info = mlflow.xgboost.log_model(model, name="model", registered_model_name=name)
    client = MlflowClient(tracking_uri=mlflow_server.tracking_uri)
    version = info.registered_model_version
    assert version is not None
    client.set_registered_model_alias(name, "champion", str(version))

    assert client.get_model_version_by_alias(name, "champion").version == str(version)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    predicted = np.asarray(loaded.predict(features[:20]))
    assert predicted.tolist() == model.predict(features[:20]).tolist()
    # Artifacts went through the server (proxied) into its state directory.
    stored = list((mlflow_server.state_dir / "mlflow" / "artifacts").rglob("MLmodel"))
    assert stored
