"""Tiny models registered the way the training pipeline does, and the app wired to real servers.

A version is registered with :meth:`MlflowRegistry.register` into a run that
also holds the training metrics and ``validation/holdout.parquet``, as
``libs/training`` logs them. Trained models are session-scoped (training
takes a moment, registering one is cheap); every test uses its own model
name, so tests share the MLflow server without seeing each other's aliases.
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from river import linear_model, neighbors

from rtml_common.config import KafkaSettings
from rtml_common.events import ModelEvent, ModelEventKind, utcnow
from rtml_common.kafka.producer import EventProducer
from rtml_common.serde import decode
from rtml_features.baseline import get_feature_set
from rtml_features.definitions import FeatureSet
from rtml_model_registry.api import create_app
from rtml_model_registry.audit.sqlite import SqliteAuditLog
from rtml_model_registry.config import Settings
from rtml_model_registry.events import EventPublisher, KafkaEventPublisher
from rtml_model_registry.gate import SubprocessGate
from rtml_models.base import ScoringModel
from rtml_models.registry.base import ModelVersion
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.river import RiverModel
from rtml_models.xgboost import XGBoostModel

with warnings.catch_warnings():
    # Starlette suggests httpx2 for its TestClient; httpx is what the workspace pins.
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from fastapi.testclient import TestClient

API_KEY = "test-key-0123456789abcdef"
AUTH = {"X-API-Key": API_KEY}
EXPERIMENT = "rtml-model-registry-tests"
#: Window of the deliberately slow KNN model: each prediction scans all of it in
#: pure Python, ~10 ms per call here (test_gate.py's budget is 0.5 ms).
SLOW_KNN_WINDOW = 30_000

BASELINE = get_feature_set("baseline")


@pytest.fixture(scope="session")
def feature_set() -> FeatureSet:
    return BASELINE


@pytest.fixture(scope="session")
def data() -> tuple[np.ndarray, np.ndarray]:
    """Random rows over the 15 baseline features and labels that depend on two of them."""
    rng = np.random.default_rng(11)
    rows = rng.normal(size=(2500, len(BASELINE.names)))
    labels = ((rows[:, 0] + rows[:, 3]) > 1.5).astype(np.float64)
    return rows, labels


def holdout_frame(rows: np.ndarray, labels: np.ndarray, names: list[str]) -> pd.DataFrame:
    """The held-out artifact's layout: features in order, is_fraud, transaction_id."""
    frame = pd.DataFrame(rows, columns=names)
    frame["is_fraud"] = labels.astype(bool)
    frame["transaction_id"] = [f"tx-{i}" for i in range(len(rows))]
    return frame


@pytest.fixture(scope="session")
def holdout(data: tuple[np.ndarray, np.ndarray]) -> pd.DataFrame:
    rows, labels = data
    return holdout_frame(rows[2000:], labels[2000:], BASELINE.names)


@pytest.fixture(scope="session")
def good_model(data: tuple[np.ndarray, np.ndarray]) -> XGBoostModel:
    rows, labels = data
    matrix = xgb.DMatrix(rows[:2000], label=labels[:2000], feature_names=BASELINE.names)
    return XGBoostModel(xgb.train({"objective": "binary:logistic", "max_depth": 3,
                                   "nthread": 1}, matrix, 10))


@pytest.fixture(scope="session")
def wrong_signature_model(data: tuple[np.ndarray, np.ndarray]) -> XGBoostModel:
    """Trained on the first 12 baseline features plus a feature the set doesn't have."""
    rows, labels = data
    names = [*BASELINE.names[:12], "tx_amount_zscore"]
    matrix = xgb.DMatrix(rows[:2000, :13], label=labels[:2000], feature_names=names)
    return XGBoostModel(xgb.train({"objective": "binary:logistic", "nthread": 1}, matrix, 3))


@pytest.fixture(scope="session")
def nan_model() -> RiverModel:
    """A River logistic regression whose intercept is NaN: every score is NaN."""
    return RiverModel(linear_model.LogisticRegression(intercept_init=float("nan")),
                      BASELINE.names)


@pytest.fixture(scope="session")
def slow_model(data: tuple[np.ndarray, np.ndarray]) -> RiverModel:
    """A River KNN over a large window: a genuinely slow single-row predict."""
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(SLOW_KNN_WINDOW, len(BASELINE.names)))
    engine = neighbors.LazySearch(window_size=SLOW_KNN_WINDOW)
    model = RiverModel(neighbors.KNNClassifier(n_neighbors=5, engine=engine), BASELINE.names)
    for row in rows:
        model.learn_one(row, bool(row[0] > 1.0))
    return model


@pytest.fixture(scope="session")
def registry(mlflow_server: Any) -> MlflowRegistry:
    return MlflowRegistry(mlflow_server.tracking_uri)


Register = Callable[..., ModelVersion]


@pytest.fixture(scope="session")
def register(registry: MlflowRegistry, holdout: pd.DataFrame,
             tmp_path_factory: pytest.TempPathFactory) -> Register:
    """``register(name, model, metrics={...}, holdout=frame | None)`` as training does."""
    client = registry.client
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = (experiment.experiment_id if experiment is not None
                     else client.create_experiment(EXPERIMENT))
    default_holdout = holdout

    def _register(name: str, model: ScoringModel, *, metrics: dict[str, float] | None = None,
                  holdout: pd.DataFrame | None = default_holdout) -> ModelVersion:
        run_id = client.create_run(experiment_id, run_name=name).info.run_id
        for key, value in (metrics or {"auc": 0.9, "ap": 0.6, "cp_at_100": 0.3}).items():
            client.log_metric(run_id, key, value)
        if holdout is not None:
            directory = tmp_path_factory.mktemp("holdout")
            path = directory / "holdout.parquet"
            holdout.to_parquet(path)
            client.log_artifact(run_id, str(path), "validation")
        client.set_terminated(run_id)
        return registry.register(name, model, feature_set=BASELINE, run_id=run_id,
                                 tags={"rtml.data_fingerprint": "sha256:test",
                                       "rtml.code_version": "test"})

    return _register


@pytest.fixture
def model_name() -> str:
    """A model name of this test's own."""
    return f"fraud-test-{uuid.uuid4().hex[:10]}"


@dataclass
class Registry:
    """The app under test and the real objects behind it."""

    client: TestClient
    settings: Settings
    audit: SqliteAuditLog
    registry: MlflowRegistry
    publisher: EventPublisher


AppFactory = Callable[..., Registry]


@pytest.fixture
def auth() -> dict[str, str]:
    """Headers of an authorised write."""
    return dict(AUTH)


@pytest.fixture
def make_app(registry: MlflowRegistry, mlflow_server: Any, kafka_broker: Any, tmp_path: Path,
             clean_environment: None) -> Iterator[AppFactory]:
    """``make_app(**settings)``: the API on the fixture servers, with its own audit log.

    ``bootstrap_servers`` overrides where events go (e.g. a port nothing listens on).
    """
    made: list[Registry] = []

    def factory(bootstrap_servers: str | None = None, **overrides: Any) -> Registry:
        values: dict[str, Any] = {"api_key": API_KEY, "audit_db": tmp_path / "audit.sqlite",
                                  "republish_interval_s": 0, "latency_samples": 200,
                                  "event_timeout_s": 10.0, **overrides}
        settings = Settings(**values)
        audit = SqliteAuditLog(settings.audit_db)
        kafka = KafkaSettings(bootstrap_servers=bootstrap_servers or kafka_broker.bootstrap_servers)
        publisher = KafkaEventPublisher(kafka, settings.event_timeout_s)
        gate = SubprocessGate.from_settings(settings, registry, mlflow_server.tracking_uri)
        client = TestClient(create_app(settings, registry, audit, publisher, gate))
        client.__enter__()
        made.append(Registry(client, settings, audit, registry, publisher))
        return made[-1]

    yield factory
    for app in made:
        app.client.__exit__(None, None, None)
        app.publisher.close()


@pytest.fixture
def events(kafka_broker: Any) -> Callable[..., list[ModelEvent]]:
    """``events(model, bootstrap=shared broker)``: the model's ``model-events`` records so far.

    See :func:`model_events`.
    """
    def _events(model: str, bootstrap_servers: str | None = None) -> list[ModelEvent]:
        return model_events(bootstrap_servers or kafka_broker.bootstrap_servers, model)

    return _events


def model_events(bootstrap_servers: str, model: str, timeout_s: float = 20.0) -> list[ModelEvent]:
    """Every ``model-events`` record of ``model`` published so far, oldest first.

    Proves absence too, without waiting for a timeout: a sentinel record is
    produced first, and since the topic is keyed by model name (one partition
    per key), everything published for ``model`` before this call comes before
    the sentinel.
    """
    sentinel = ModelEvent(event_id=f"sentinel-{uuid.uuid4().hex}", kind=ModelEventKind.REGISTERED,
                          model_name=model, actor="test-sentinel", occurred_at=utcnow())
    # Not idempotent: the local broker answers idempotent produce requests ~0.5 s slower.
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers, idempotent_producer=False)
    with EventProducer(settings) as producer:
        producer.send(sentinel)
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    metadata = consumer.list_topics("model-events", timeout=10)
    partitions = sorted(metadata.topics["model-events"].partitions)
    consumer.assign([TopicPartition("model-events", p, OFFSET_BEGINNING) for p in partitions])
    found: list[ModelEvent] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            event = decode(message.value(), ModelEvent, message.headers())
            if event.event_id == sentinel.event_id:
                return found
            if event.model_name == model and not event.event_id.startswith("sentinel-"):
                found.append(event)
    finally:
        consumer.close()
    raise TimeoutError(f"sentinel for {model} not consumed within {timeout_s:g} s")
