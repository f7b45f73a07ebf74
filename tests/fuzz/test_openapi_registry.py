"""Schemathesis against the model registry's OpenAPI, the app wired to real MLflow and Kafka.

The registry has a key and a registered model (so reads and writes reach
MLflow, the gate and the audit log, not only the 404 paths).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
import xgboost as xgb
from pydantic import SecretStr

from rtml_common.config import KafkaSettings
from rtml_features.baseline import BASELINE
from rtml_model_registry.api import create_app
from rtml_model_registry.audit.sqlite import SqliteAuditLog
from rtml_model_registry.config import Settings
from rtml_model_registry.events import KafkaEventPublisher
from rtml_model_registry.gate import SubprocessGate
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.xgboost import XGBoostModel

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_environment")]
KEY = "fuzz-registry-key-0123456789"


def test_registry_api_conforms_to_its_openapi(fuzz_api: Any, mlflow_server: Any,
                                               kafka_broker: Any, tmp_path: Path) -> None:
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    rng = np.random.default_rng(0)
    rows = rng.random((200, len(BASELINE.names)))
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1},
                        xgb.DMatrix(rows, label=rows[:, 0] > 0.5,
                                    feature_names=list(BASELINE.names)), 3)
    registry.register(f"fuzz-{uuid.uuid4().hex[:8]}", XGBoostModel(booster),
                      feature_set=BASELINE)
    settings = Settings(api_key=SecretStr(KEY), audit_db=tmp_path / "audit.sqlite",
                        republish_interval_s=0, latency_samples=50)
    publisher = KafkaEventPublisher(
        KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers), 10.0)
    gate = SubprocessGate.from_settings(settings, registry, mlflow_server.tracking_uri)
    app = create_app(settings, registry, SqliteAuditLog(settings.audit_db), publisher, gate)
    try:
        report = fuzz_api("model registry", schemathesis.openapi.from_asgi("/openapi.json", app),
                          headers={"X-API-Key": KEY})
    finally:
        publisher.close()
    print(report.summary())
    assert len(report.operations) == 11 and report.requests >= len(report.operations)
    assert not report.findings, report.summary()
