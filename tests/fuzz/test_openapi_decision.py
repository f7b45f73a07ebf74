"""Schemathesis against the decision API's OpenAPI, the service wired as for real.

``build_service`` on the fixture Kafka, Redis, MLflow (a registered champion)
and Cassandra (the decision log the backtest reads), its lifespan started,
then every operation fuzzed with the admin key and without it.
"""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
import xgboost as xgb
from pydantic import SecretStr

from rtml_common.config import CassandraSettings, KafkaSettings, MlflowSettings, RedisSettings
from rtml_decision.config import Settings
from rtml_decision.wiring import build_service
from rtml_features.baseline import BASELINE
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.xgboost import XGBoostModel

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from fastapi.testclient import TestClient

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_environment")]
KEY = "fuzz-admin-key-0123456789"
RULES = """
name: fuzz-primary
version: "1"
rules:
  - {name: high_score, when: "score >= 0.9", outcome: decline, reason: SCORE_HIGH}
  - {name: big_amount, when: "amount >= 1000", outcome: review, reason: LARGE_AMOUNT}
"""
FALLBACK = """
name: fuzz-fallback
version: "1"
rules:
  - {name: fallback_big_amount, when: "amount >= 500", outcome: review, reason: FALLBACK}
"""


def test_decision_api_conforms_to_its_openapi(fuzz_api: Any, kafka_broker: Any,
                                               redis_server: Any, mlflow_server: Any,
                                               cassandra_server: Any, tmp_path: Path) -> None:
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    name = f"fuzz-decision-{uuid.uuid4().hex[:8]}"
    rows = np.random.default_rng(0).random((300, len(BASELINE.names)))
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1, "max_depth": 3},
                        xgb.DMatrix(rows, label=rows[:, 0] > 0.5,
                                    feature_names=list(BASELINE.names)), 5)
    version = registry.register(name, XGBoostModel(booster), feature_set=BASELINE)
    registry.set_alias(name, "champion", version.version)
    (tmp_path / "primary.yaml").write_text(RULES)
    (tmp_path / "fallback.yaml").write_text(FALLBACK)
    settings = Settings(model_name=name, rules_path=tmp_path / "primary.yaml",
                        fallback_rules_path=tmp_path / "fallback.yaml",
                        admin_api_key=SecretStr(KEY))
    service = build_service(
        settings, KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers),
        RedisSettings(url=redis_server.url),
        MlflowSettings(tracking_uri=mlflow_server.tracking_uri),
        CassandraSettings(contact_points=cassandra_server.host, port=cassandra_server.port),
        watch_models=False, log_table=f"fuzz_{uuid.uuid4().hex[:8]}",
        log_group=f"fuzz-writer-{uuid.uuid4().hex[:8]}")
    app = service.app()
    with TestClient(app):  # the lifespan: publisher, decision log, rule worker started
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        with_key = fuzz_api("decision API (admin key)", schema, headers={"X-API-Key": KEY})
        without = fuzz_api("decision API (no key)", schema)
    for report in (with_key, without):
        print(report.summary())
        assert report.requests >= len(report.operations) >= 5
    assert not with_key.findings, with_key.summary()
    assert not without.findings, without.summary()
