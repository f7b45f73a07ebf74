"""Helpers for the scorer's integration tests: small registered models, vectors, a running scorer.

Real servers only (``kafka_broker_factory`` for a broker of the test's own
with every platform topic, the session's ``mlflow_server``); models are
tiny XGBoost / River models over the 15 baseline features, registered
through :class:`MlflowRegistry` exactly as training would.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from rtml_common.config import KafkaSettings, MlflowSettings
from rtml_common.events import FeatureVector, Label, ModelEvent, ModelEventKind, utcnow
from rtml_common.kafka.producer import EventProducer
from rtml_features.baseline import BASELINE
from rtml_localstack.testing import TEST_SESSION_TIMEOUT_MS, KafkaBroker, MlflowServer
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.river import RiverModel, default_online_model
from rtml_models.xgboost import XGBoostModel
from rtml_scorer import service
from rtml_scorer.config import Settings
from rtml_scorer.scorer import Scorer

NAMES = BASELINE.names
T0 = datetime(2018, 6, 1, tzinfo=UTC)


def xgb_model(seed: int, trees: int = 10) -> XGBoostModel:
    rng = np.random.default_rng(seed)
    rows = rng.gamma(2.0, 20.0, (500, len(NAMES)))
    labels = (rows[:, 0] + rng.normal(0, 20, 500) > 50).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3},
                        xgb.DMatrix(rows, label=labels, feature_names=NAMES), trees)
    return XGBoostModel(booster)


def river_model(nan: bool = False, names: list[str] | None = None) -> RiverModel:
    model = RiverModel(default_online_model(), names or NAMES)
    if nan:  # NaN in the scaler's running mean: every later score is NaN
        model.learn_one([float("nan")] * len(model.feature_names), True)
    return model


def vector(i: int, customer: str, event_time: datetime, features: dict[str, float] | None = None,
           revision: int = 0) -> FeatureVector:
    values = features if features is not None else {
        name: float((i * 7 + k * 13) % 97) for k, name in enumerate(NAMES)}
    return FeatureVector(transaction_id=f"tx-{i}", customer_id=customer, event_time=event_time,
                         amount=values.get("tx_amount", 1.0), feature_set=BASELINE.name,
                         feature_set_version=BASELINE.version, features=values,
                         revision=revision, computed_at=utcnow())


def produce(kafka: KafkaSettings, events: list[Any]) -> None:
    with EventProducer(kafka) as producer:
        for event in events:
            producer.send(event)


def model_event(name: str, alias: str, version: str) -> ModelEvent:
    return ModelEvent(event_id=uuid.uuid4().hex, kind=ModelEventKind.ALIAS_SET,
                      model_name=name, alias=alias, version=version, actor="test",
                      occurred_at=utcnow())


def label(i: int, customer: str, labeled_at: datetime, fraud: bool = True) -> Label:
    return Label(transaction_id=f"tx-{i}", customer_id=customer, transaction_time=T0,
                 labeled_at=labeled_at, is_fraud=fraud)


def read_all(bootstrap: str, topic: str, idle_s: float = 1.5,
             timeout_s: float = 30.0) -> list[Any]:
    """Every record of ``topic`` from the start, until ``idle_s`` pass with nothing new."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle_s and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.2):
                if message.error() is None:
                    records.append(message)
                    last = time.monotonic()
    finally:
        consumer.close()
    return records


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Deployment:
    """A broker, a registry and a model name of this test's own.

    The module's helpers are reachable as attributes (test modules cannot
    import conftest under ``--import-mode=importlib``).
    """

    broker: KafkaBroker
    registry: MlflowRegistry
    name: str
    tmp: Path
    threads: list[threading.Thread] = field(default_factory=list)

    xgb_model = staticmethod(xgb_model)
    river_model = staticmethod(river_model)
    vector = staticmethod(vector)
    model_event = staticmethod(model_event)
    label = staticmethod(label)
    wait_until = staticmethod(wait_until)
    names = NAMES

    @staticmethod
    def customers(n: int = 40) -> list[str]:
        """Enough customer ids that every partition of ``features`` gets some."""
        return [f"c{k}" for k in range(n)]

    @staticmethod
    def at(minutes: float) -> datetime:
        return T0 + timedelta(minutes=minutes)

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.broker.bootstrap_servers,
                             session_timeout_ms=TEST_SESSION_TIMEOUT_MS,
                             idempotent_producer=False, commit_interval_s=0.2)

    def produce(self, events: list[Any]) -> None:
        produce(self.kafka, events)

    def read_all(self, topic: str, idle_s: float = 1.5) -> list[Any]:
        return read_all(self.broker.bootstrap_servers, topic, idle_s)

    def register(self, model: Any, alias: str | None = None) -> str:
        version = self.registry.register(self.name, model, feature_set=BASELINE).version
        if alias:
            self.registry.set_alias(self.name, alias, version)
        return version

    def start_scorer(self, **overrides: Any) -> RunningScorer:
        """``service.run`` in a thread; returns once the scorer object exists."""
        settings = Settings(model_name=self.name, consumer_group=f"g-{self.name}", **overrides)
        running = RunningScorer(threading.Event())
        ready = threading.Event()

        def on_scorer(scorer: Scorer) -> None:
            running.scorer = scorer
            ready.set()

        def target() -> None:
            running.result = service.run(
                settings, self.kafka, MlflowSettings(tracking_uri=self.registry.tracking_uri),
                install_signal_handlers=False, workdir=self.tmp / "serving",
                stop=running.stop, on_scorer=on_scorer)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        running.thread = thread
        assert ready.wait(30), "scorer did not start"
        return running


@dataclass
class RunningScorer:
    stop: threading.Event
    scorer: Scorer | None = None
    result: service.ScorerRun | None = None
    thread: threading.Thread | None = None

    def finish(self, timeout_s: float = 60.0) -> service.ScorerRun:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(timeout_s)
        assert self.result is not None, "scorer did not stop"
        return self.result


@pytest.fixture
def deployment(kafka_broker_factory: Callable[..., KafkaBroker], mlflow_server: MlflowServer,
               tmp_path: Path) -> Iterator[Deployment]:
    broker = kafka_broker_factory(create_topics=True)
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    yield Deployment(broker, registry, f"scorer-{uuid.uuid4().hex[:8]}", tmp_path)
