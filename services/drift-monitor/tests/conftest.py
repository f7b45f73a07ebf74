"""Fixtures of the drift monitor's tests: simulated replays and a small deployment.

* ``replay_of(config)``: simulator -> batch features (the engine training
  uses) -> a fixed score -> reference distributions of four weeks after the
  feature warm-up, and the later rows to replay through the detector.
* ``deployment``: a broker of the test's own with every platform topic, the
  session's MLflow server, and helpers to register a champion carrying a
  reference artifact exactly where training logs it.

Test modules cannot import this file (pytest's importlib mode), so helpers
are reached through the fixtures.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from rtml_common.config import KafkaSettings, MlflowSettings
from rtml_common.events import ModelEvent, ModelEventKind, utcnow
from rtml_common.kafka.producer import EventProducer
from rtml_drift_monitor import service
from rtml_drift_monitor.config import Settings
from rtml_drift_monitor.monitor import DriftMonitor
from rtml_drift_monitor.reference import REFERENCE_ARTIFACT
from rtml_features.baseline import BASELINE
from rtml_features.batch import compute_features, to_epoch_ms
from rtml_localstack.testing import TEST_SESSION_TIMEOUT_MS, KafkaBroker, MlflowServer, consume
from rtml_models.aliases import CHAMPION
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_monitoring.reference import ReferenceDistributions, build_reference
from rtml_simulator.config import SimulationConfig
from rtml_simulator.frames import frames_from_table
from rtml_simulator.io import transactions_table
from rtml_simulator.simulate import simulate

NAMES = BASELINE.names
#: Feature warm-up: the 30-day terminal windows look back 30 days behind a 7-day label delay.
WARM_UP_DAYS = 37
#: The reference period: four whole weeks after the warm-up (weekly cycle in full).
REFERENCE_DAYS = 28


def score(frame: pd.DataFrame) -> npt.NDArray[np.float64]:
    """A fixed, deterministic stand-in for a model score (a logistic of risk signals).

    Deterministic so the score's distribution is stationary exactly when its
    inputs are; it uses amount, night, terminal risk and the card's recent
    activity, the signals a fraud model leans on.
    """
    z = (-4.0 + frame["tx_amount"].to_numpy() / 60
         + 3.0 * frame["terminal_id_risk_7day_window"].to_numpy()
         + 0.5 * frame["tx_during_night"].to_numpy()
         + 0.2 * frame["customer_id_nb_tx_1day_window"].to_numpy()
         - frame["customer_id_avg_amount_7day_window"].to_numpy() / 100)
    return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class Replay:
    """A simulated run's reference and the later rows to replay through the detector."""

    config: SimulationConfig
    reference: ReferenceDistributions
    times_ms: npt.NDArray[np.int64]
    features: npt.NDArray[np.float64]
    scores: npt.NDArray[np.float64]
    day: npt.NDArray[np.int64]
    start_ms: int

    def __len__(self) -> int:
        return len(self.times_ms)


def build_replay(config: SimulationConfig) -> Replay:
    """Simulate, compute features (batch engine), take the reference after the warm-up."""
    sim = simulate(config)
    dataset = frames_from_table(transactions_table(sim))
    frame = compute_features(BASELINE, dataset.history, dataset.history, dataset.labels)
    times = to_epoch_ms(frame["event_time"])
    start_ms = int(pd.Timestamp(config.start_date, tz="UTC").timestamp() * 1000)
    day = (times - start_ms) // 86_400_000
    scores = score(frame)
    in_reference = (day >= WARM_UP_DAYS) & (day < WARM_UP_DAYS + REFERENCE_DAYS)
    reference = build_reference(frame[in_reference], NAMES, scores[in_reference],
                                feature_set=BASELINE.name,
                                feature_set_version=BASELINE.version)
    live = day >= WARM_UP_DAYS + REFERENCE_DAYS
    return Replay(config, reference, times[live], frame[NAMES].to_numpy(np.float64)[live],
                  scores[live], day[live], start_ms)


_REPLAYS: dict[SimulationConfig, Replay] = {}


@pytest.fixture(scope="session")
def replay_of() -> Callable[[SimulationConfig], Replay]:
    """``replay_of(config)``: the (cached) :class:`Replay` of a simulation config."""

    def build(config: SimulationConfig) -> Replay:
        if config not in _REPLAYS:
            _REPLAYS[config] = build_replay(config)
        return _REPLAYS[config]

    return build


# -- integration: a broker, a registry, a champion with a reference -----------------

T0 = datetime(2018, 6, 1, tzinfo=UTC)


def synthetic_frame(rows: int, seed: int, amount_scale: float = 1.0) -> pd.DataFrame:
    """Baseline-feature-shaped values (gamma amounts, 0/1 flags, counts) for the reference."""
    rng = np.random.default_rng(seed)
    data = {name: rng.gamma(2.0, 20.0, rows) for name in NAMES}
    data["tx_amount"] = rng.gamma(2.0, 25.0, rows) * amount_scale
    data["tx_during_weekend"] = (rng.random(rows) < 2 / 7).astype(float)
    data["tx_during_night"] = (rng.random(rows) < 0.1).astype(float)
    return pd.DataFrame(data)


def synthetic_scores(rows: int, seed: int, shift: float = 0.0) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    return np.clip(rng.beta(2.0, 8.0, rows) + shift, 0.0, 1.0)


def tiny_model(seed: int = 0) -> Any:
    """A small XGBoost model over the baseline features (what gets registered)."""
    import xgboost as xgb

    from rtml_models.xgboost import XGBoostModel

    rng = np.random.default_rng(seed)
    rows = rng.gamma(2.0, 20.0, (300, len(NAMES)))
    labels = (rows[:, 0] > 45).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2},
                        xgb.DMatrix(rows, label=labels, feature_names=NAMES), 5)
    return XGBoostModel(booster)


@dataclass
class Deployment:
    """A broker and model name of this test's own, on the session's MLflow server."""

    broker: KafkaBroker
    registry: MlflowRegistry
    name: str
    #: The monitor's checkpoint folder (the test's own: never the working tree's .rtml).
    state_dir: Path
    t0: datetime = T0
    synthetic_frame = staticmethod(synthetic_frame)
    synthetic_scores = staticmethod(synthetic_scores)
    names = NAMES

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.broker.bootstrap_servers,
                             session_timeout_ms=TEST_SESSION_TIMEOUT_MS,
                             idempotent_producer=False, commit_interval_s=0.2)

    def register_champion(self, reference: ReferenceDistributions, seed: int = 0,
                          with_reference: bool = True) -> str:
        """Register a version whose training run carries ``reference``; point champion at it."""
        client = self.registry.client
        experiment = client.get_experiment_by_name(self.name)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else client.create_experiment(self.name))
        run_id = client.create_run(experiment_id, run_name=f"train-{seed}").info.run_id
        if with_reference:
            client.log_text(run_id, reference.to_json(), REFERENCE_ARTIFACT)
        client.set_terminated(run_id)
        version = self.registry.register(self.name, tiny_model(seed), feature_set=BASELINE,
                                         run_id=run_id).version
        self.registry.set_alias(self.name, CHAMPION, version)
        return version

    def model_event(self, version: str) -> ModelEvent:
        return ModelEvent(event_id=uuid.uuid4().hex, kind=ModelEventKind.ALIAS_SET,
                          model_name=self.name, alias=CHAMPION, version=version,
                          actor="test", occurred_at=utcnow())

    def produce(self, events: Sequence[Any]) -> None:
        with EventProducer(self.kafka) as producer:
            for event in events:
                producer.send(event)

    def produce_raw(self, topic: str, key: bytes, value: bytes) -> None:
        with EventProducer(self.kafka) as producer:
            producer.send_raw(topic, key, value)

    def consume(self, topic: str, n: int, timeout_s: float = 60.0) -> list[Any]:
        return consume(self.broker.bootstrap_servers, topic, n, timeout_s)

    def start(self, stop: threading.Event, **overrides: Any) -> RunningMonitor:
        """``service.run`` in a thread; returns once the monitor object exists."""
        settings = Settings(model_name=self.name, consumer_group=f"g-{self.name}",
                            refresh_interval_s=1.0,
                            **{"state_dir": self.state_dir, **overrides})
        running = RunningMonitor(stop)
        ready = threading.Event()

        def on_monitor(monitor: DriftMonitor) -> None:
            running.monitor = monitor
            ready.set()

        def target() -> None:
            running.result = service.run(
                settings, self.kafka, MlflowSettings(tracking_uri=self.registry.tracking_uri),
                install_signal_handlers=False, registry=self.registry, stop=stop,
                on_monitor=on_monitor)

        running.thread = threading.Thread(target=target, daemon=True)
        running.thread.start()
        assert ready.wait(30), "monitor did not start"
        return running


@dataclass
class RunningMonitor:
    stop: threading.Event
    monitor: DriftMonitor | None = None
    result: service.MonitorRun | None = None
    thread: threading.Thread | None = None

    def finish(self, timeout_s: float = 60.0) -> service.MonitorRun:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(timeout_s)
        assert self.result is not None, "monitor did not stop"
        return self.result


@pytest.fixture
def deployment(kafka_broker_factory: Callable[..., KafkaBroker],
               mlflow_server: MlflowServer, tmp_path: Path) -> Iterator[Deployment]:
    broker = kafka_broker_factory(create_topics=True)
    yield Deployment(broker, MlflowRegistry(mlflow_server.tracking_uri),
                     f"drift-{uuid.uuid4().hex[:8]}", tmp_path / "drift-monitor")
