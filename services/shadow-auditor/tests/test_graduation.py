"""End to end with real servers: a better shadow is graduated through the real registry.

Kafka (session broker), MLflow (session server) and the model-registry service
(``python -m rtml_model_registry`` in a subprocess, its gate included) are
real. Two XGBoost versions are registered as training does (metrics +
``validation/holdout.parquet``), v1 is made champion and v2 challenger through
the registry's API; then champion predictions, shadow scores and labels are
produced where v2 ranks the frauds better. The auditor, run in-process with
``auto_promote``, must move ``champion`` to v2, remove ``challenger``, write
the report and say why in the registry's audit log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from pydantic import SecretStr

from rtml_common.config import KafkaSettings
from rtml_common.events import Label, Prediction, ShadowScore
from rtml_common.kafka.producer import EventProducer
from rtml_features.baseline import BASELINE
from rtml_localstack.environment import without_developer_settings
from rtml_localstack.ports import free_port
from rtml_localstack.testing import TEST_SESSION_TIMEOUT_MS
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.xgboost import XGBoostModel
from rtml_shadow_auditor import service
from rtml_shadow_auditor.config import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "registry-key-0123456789"
T0 = datetime(2018, 6, 1, tzinfo=UTC)


def tiny_model(seed: int) -> XGBoostModel:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(600, len(BASELINE.names)))
    labels = (rows[:, 0] + rows[:, 3] > 1.5).astype(float)
    return XGBoostModel(xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                                  xgb.DMatrix(rows, label=labels, feature_names=BASELINE.names),
                                  8))


def register(registry: MlflowRegistry, name: str, model: XGBoostModel, ap: float,
             tmp: Path) -> str:
    """A version as training registers it: run metrics and the held-out frame the gate scores."""
    client = registry.client
    experiment = client.get_experiment_by_name("rtml-shadow-auditor-tests")
    experiment_id = (experiment.experiment_id if experiment is not None
                     else client.create_experiment("rtml-shadow-auditor-tests"))
    run_id = client.create_run(experiment_id, run_name=name).info.run_id
    for key, value in {"auc": 0.9, "ap": ap, "cp_at_100": 0.3}.items():
        client.log_metric(run_id, key, value)
    rng = np.random.default_rng(5)
    holdout = pd.DataFrame(rng.normal(size=(300, len(BASELINE.names))), columns=BASELINE.names)
    holdout["is_fraud"] = holdout[BASELINE.names[0]] > 1.2
    holdout["transaction_id"] = [f"h-{i}" for i in range(300)]
    path = tmp / f"holdout-{uuid.uuid4().hex[:6]}" / "holdout.parquet"
    path.parent.mkdir()
    holdout.to_parquet(path)
    client.log_artifact(run_id, str(path), "validation")
    client.set_terminated(run_id)
    return registry.register(name, model, feature_set=BASELINE, run_id=run_id,
                             tags={"rtml.data_fingerprint": "sha256:test",
                                   "rtml.code_version": "test"}).version


def start_registry(mlflow_uri: str, bootstrap: str, tmp: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    base = without_developer_settings(os.environ)
    env = {**base, "RTML_MLFLOW_TRACKING_URI": mlflow_uri,
           "RTML_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "RTML_MODEL_REGISTRY_HTTP_PORT": str(port),
           "RTML_MODEL_REGISTRY_AUDIT_DB": str(tmp / "registry-audit.sqlite"),
           "RTML_MODEL_REGISTRY_API_KEY": KEY,
           "RTML_MODEL_REGISTRY_LATENCY_SAMPLES": "100",
           "RTML_MODEL_REGISTRY_REPUBLISH_INTERVAL_S": "0"}
    process = subprocess.Popen([sys.executable, "-m", "rtml_model_registry"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read() if process.stderr else ""
            raise AssertionError(f"registry exited: {stderr}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError("registry did not start")


def traffic(name: str, n: int = 1500) -> list[Any]:
    """n transactions over 10 days; v2 (shadow) separates frauds better than v1 (champion)."""
    rng = np.random.default_rng(7)
    fraud = rng.random(n) < 0.08
    champion = np.clip(0.15 * fraud + rng.normal(0.3, 0.15, n), 0, 1)
    shadow = np.clip(0.45 * fraud + rng.normal(0.25, 0.12, n), 0, 1)
    events: list[Any] = []
    for i in range(n):
        at = T0 + timedelta(minutes=10 * i)
        tx = f"{name}-tx-{i}"  # labels are not per model: the shared broker has others' too
        common = {"transaction_id": tx, "customer_id": f"c{i % 90}", "event_time": at,
                  "model_name": name, "scored_at": at}
        events.append(Prediction(**common, model_version="1", score=float(champion[i]),
                                 latency_ms=1.5))
        events.append(ShadowScore(**common, model_version="2", score=float(shadow[i]),
                                  latency_ms=2.5, champion_version="1"))
        events.append(Label(transaction_id=tx, customer_id=f"c{i % 90}",
                            transaction_time=at, labeled_at=at + timedelta(days=1),
                            is_fraud=bool(fraud[i])))
    return events


def test_a_better_shadow_is_graduated_through_the_registry(
        mlflow_server: Any, kafka_broker: Any, tmp_path: Path) -> None:
    name = f"fraud-auditor-{uuid.uuid4().hex[:8]}"
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    assert register(registry, name, tiny_model(1), 0.60, tmp_path) == "1"
    assert register(registry, name, tiny_model(2), 0.61, tmp_path) == "2"
    process, url = start_registry(mlflow_server.tracking_uri, kafka_broker.bootstrap_servers,
                                  tmp_path)
    try:
        for alias, version in (("champion", "1"), ("challenger", "2")):
            moved = httpx.put(f"{url}/v1/models/{name}/aliases/{alias}", headers={"X-API-Key": KEY},
                              json={"version": version, "actor": "test", "reason": "setup"},
                              timeout=120)
            assert moved.status_code == 200, moved.text
        kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers,
                              session_timeout_ms=TEST_SESSION_TIMEOUT_MS,
                              idempotent_producer=False, commit_interval_s=0.2)
        with EventProducer(kafka) as producer:
            for event in traffic(name):
                producer.send(event)
        port = free_port()
        settings = Settings(model_name=name, consumer_group=f"g-{name}", auto_promote=True,
                            graduation_min_labels=800, graduation_min_frauds=30,
                            registry_url=url, registry_api_key=SecretStr(KEY),
                            state_dir=tmp_path / "state", report_dir=tmp_path / "reports",
                            http_port=port, exit_when_idle_s=3.0, evaluate_interval_s=3600)
        result: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: result.update(run=service.run(
            settings, kafka, install_signal_handlers=False)), daemon=True)
        thread.start()
        health = wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json())
        assert health["model_name"] == name
        thread.join(180)
        assert not thread.is_alive(), "the auditor did not stop when idle"
        run = result["run"]
        assert run.errors == [] and run.applied >= 4500

        aliases = httpx.get(f"{url}/v1/models/{name}/aliases").json()["aliases"]
        assert aliases == {"champion": "2"}
        report = tmp_path / "reports" / f"shadow-audit-{name}.html"
        assert report.is_file() and "<svg" in report.read_text()
        entries = httpx.get(f"{url}/v1/models/{name}/audit").json()["entries"]
        promoted = [e for e in entries if e["alias"] == "champion" and e["to_version"] == "2"]
        assert len(promoted) == 1 and promoted[0]["actor"].startswith("rtml-shadow-auditor")
        reason = promoted[0]["reason"]
        assert "v2 graduates over champion v1" in reason and "audit report: " in reason
        frozen = Path(reason.split("audit report: ")[1])
        assert frozen.is_file() and frozen.parent == (tmp_path / "reports").resolve()
        assert any(e["alias"] == "challenger" and e["action"] == "remove" for e in entries)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_for(probe: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return probe()
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
