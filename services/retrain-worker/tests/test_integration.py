"""The loop against real servers: replay -> archive -> RetrainRequest -> challenger in shadow.

A small simulated data set (300 customers, 35 days, ~21k transactions) is
replayed to a broker of this test's own; the worker archives it, trains on
the newest mature window, registers a version in the session's MLflow
server and asks the real model-registry service (``python -m
rtml_model_registry``, its gate included) to make it the ``challenger``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pandas as pd
import pytest
from mlflow import MlflowClient
from pydantic import SecretStr

from rtml_common.config import KafkaSettings, MlflowSettings
from rtml_common.events import RetrainRequest
from rtml_common.kafka.producer import EventProducer
from rtml_localstack.environment import without_developer_settings
from rtml_localstack.ports import free_port
from rtml_localstack.testing import TEST_SESSION_TIMEOUT_MS, KafkaBroker, MlflowServer
from rtml_models.aliases import CHALLENGER
from rtml_monitoring.reference import ReferenceDistributions
from rtml_retrain_worker import service
from rtml_retrain_worker.archive import Archive
from rtml_retrain_worker.challenger import RegistryClient
from rtml_retrain_worker.config import Settings
from rtml_retrain_worker.requests import Status
from rtml_retrain_worker.retrain import TAG_ALERT_IDS, TAG_REQUEST_IDS
from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_simulator.replay import ReplayOptions, replay
from rtml_training.mlflow_logging import HOLDOUT_ARTIFACT, REFERENCE_ARTIFACT

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.usefixtures("clean_environment")]

API_KEY = "retrain-test-key-0123456789"
SMALL = SimulationConfig(n_customers=300, n_terminals=600, n_days=35,
                         radius=5.0 * (10_000 / 600) ** 0.5)
START = datetime(2018, 4, 1, tzinfo=UTC)  # the simulator's first day


@pytest.fixture
def registry_service(mlflow_server: MlflowServer, kafka_broker: KafkaBroker,
                     tmp_path: Path) -> Iterator[str]:
    """``python -m rtml_model_registry`` on a free port; yields its base URL."""
    port = free_port()
    base = without_developer_settings(os.environ)
    env = {**base, "RTML_MLFLOW_TRACKING_URI": mlflow_server.tracking_uri,
           "RTML_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
           "RTML_MODEL_REGISTRY_HTTP_PORT": str(port),
           "RTML_MODEL_REGISTRY_AUDIT_DB": str(tmp_path / "registry" / "audit.sqlite"),
           "RTML_MODEL_REGISTRY_API_KEY": API_KEY,
           "RTML_MODEL_REGISTRY_LATENCY_SAMPLES": "100"}
    log = tmp_path / "registry.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "rtml_model_registry"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"registry exited: {log.read_text()[-2000:]}"
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"registry not up: {log.read_text()[-2000:]}"
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def retrain_request(request_id: str, model: str, day: int) -> RetrainRequest:
    """As the drift monitor sends it: the alerting window ends 06:00 on ``day``, 21-day lookback."""
    data_end = START + timedelta(days=day, hours=6)
    return RetrainRequest(request_id=request_id, model_name=model,
                          reason="drift on tx_amount (psi 0.31)",
                          alert_ids=[f"alert-{request_id}"],
                          data_start=data_end - timedelta(days=21), data_end=data_end,
                          requested_at=datetime.now(UTC))


def run_worker(settings: Settings, kafka: KafkaSettings, tracking_uri: str, registry_url: str,
               idle_s: float) -> service.WorkerRun:
    """The worker until it has been idle ``idle_s`` and trained all it can (in a thread)."""
    result: list[service.WorkerRun] = []
    registry = RegistryClient(registry_url, SecretStr(API_KEY), timeout_s=120, attempts=2)
    thread = threading.Thread(target=lambda: result.append(service.run(
        settings, kafka, MlflowSettings(tracking_uri=tracking_uri), max_idle_s=idle_s,
        install_signal_handlers=False, registry=registry)), daemon=True)
    thread.start()
    thread.join(150)
    assert result, "the worker did not finish"
    return result[0]


def test_retrain_request_leads_to_a_registered_challenger_in_shadow(
        kafka_broker_factory: Callable[..., KafkaBroker], mlflow_server: MlflowServer,
        registry_service: str, tmp_path: Path) -> None:
    model = f"retrain-{uuid.uuid4().hex[:8]}"
    broker = kafka_broker_factory(create_topics=True)
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                          session_timeout_ms=TEST_SESSION_TIMEOUT_MS, idempotent_producer=False,
                          commit_interval_s=0.2)
    data = write_dataset(simulate(SMALL), tmp_path / "data")
    report = replay(data, ReplayOptions(create_topics=False), settings=kafka)
    assert report.transactions > 10_000
    # Labels are replayed up to May 5 (labels due after the last day, May 5, are withheld).
    # A burst: r1 (window ends Apr 17) needs Apr 18, 19, 20 trained on, 7 test days and 7 d
    # maturity: label time May 5 00:00, just reached. r2, the monitor asking again a day
    # later, alone would need May 6, which never comes: the earliest request decides.
    # r1 is delivered twice.
    with EventProducer(kafka) as producer:
        for request in (retrain_request("r1", model, 16), retrain_request("r1", model, 16),
                        retrain_request("r2", model, 17)):
            producer.send(request)

    settings = Settings(model_name=model, consumer_group=f"g-{model}",
                        archive_dir=tmp_path / "archive", train_days=7, test_days=7,
                        label_maturity_days=7, min_days_after_drift=3, check_interval_s=0.5,
                        segment_max_events=20_000, segment_max_age_s=1)
    run = run_worker(settings, kafka, mlflow_server.tracking_uri, registry_service, idle_s=4)

    assert [(t.request_ids, t.status) for t in run.trainings] == [(("r1", "r2"), Status.DONE)]
    version = run.trainings[0].version
    assert version is not None and run.pending == 0
    assert run.segments >= 3  # segment files: cut by size (20k events), one per kind
    state = Archive(tmp_path / "archive").state()
    assert (state.transactions, state.labels) == (report.transactions, report.labels)

    # The registry (the real service) says the challenger is the new version.
    aliases = httpx.get(f"{registry_service}/v1/models/{model}/aliases").json()["aliases"]
    assert aliases == {CHALLENGER: version}
    lineage = httpx.get(f"{registry_service}/v1/models/{model}/versions/{version}").json()
    assert lineage["metrics"]["auc"] > 0.5

    client = MlflowClient(mlflow_server.tracking_uri)
    registered = client.get_model_version(model, version)
    assert registered.run_id is not None
    assert registered.tags[TAG_REQUEST_IDS] == "r1,r2"
    assert registered.tags[TAG_ALERT_IDS] == "alert-r1,alert-r2"
    run_info = client.get_run(registered.run_id)
    assert run_info.data.tags[TAG_REQUEST_IDS] == "r1,r2"
    params = run_info.data.params
    # Label time May 5, mature after 7 days: test Apr 21..27, train Apr 14..20, which holds
    # r1's drift day (Apr 17) and the 3 days after it.
    assert (params["split.test_start"], params["split.test_last_day"]) == ("2018-04-21",
                                                                           "2018-04-27")
    assert params["split.train_start"] == "2018-04-14"
    reference = ReferenceDistributions.from_json(Path(client.download_artifacts(
        registered.run_id, REFERENCE_ARTIFACT, str(tmp_path / "ref"))).read_text())
    assert len(reference.features) == 15
    holdout = pd.read_parquet(client.download_artifacts(registered.run_id, HOLDOUT_ARTIFACT,
                                                        str(tmp_path / "holdout")))
    assert len(holdout) > 100 and holdout["is_fraud"].any()

    # The book on disk says so too.
    book = orjson.loads((tmp_path / "archive" / "requests.json").read_bytes())["requests"]
    assert {(e["request"]["request_id"], e["status"], e["version"]) for e in book} == {
        ("r1", "done", version), ("r2", "done", version)}

    # A request after that training is not answered by it: it waits for its own (label time
    # May 7, past this replay). A restart re-archives nothing and retrains nothing.
    with EventProducer(kafka) as producer:
        producer.send(retrain_request("r3", model, 18))
    again = run_worker(settings, kafka, mlflow_server.tracking_uri, registry_service, idle_s=2)
    assert again.trainings == [] and again.segments == 0
    assert again.loop.consumed == 1 and again.pending == 1
    book = orjson.loads((tmp_path / "archive" / "requests.json").read_bytes())["requests"]
    assert {(e["request"]["request_id"], e["status"]) for e in book} == {
        ("r1", "done"), ("r2", "done"), ("r3", "pending")}

