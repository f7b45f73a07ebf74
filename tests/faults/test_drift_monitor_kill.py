"""kill -9 of the drift monitor mid-stream: windows counted once, every alert published once.

The monitor (``python -m rtml_drift_monitor``) checkpoints its windows, alert
states and retrain cooldown with the input offsets they cover and where its
output topics ended (``rtml_drift_monitor.checkpoint``); a restart resumes at
those offsets and does not re-publish the alert / request ids it finds after
those ends. The stream: hourly windows (3-hour sliding ones) of feature
vectors and champion scores, hours 4-6 drifting so alerts and a retrain
request are raised around the kill, and one vector in five re-published as a
revision (ignored by design). Checks against an uninterrupted run of the
same service over the same topics: the same alert and request ids, none
twice on the topics, and the same final window state (counts per pane,
events observed, late events, alert states) — so nothing was counted twice
or skipped.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from rtml_common.config import KafkaSettings, MlflowSettings
from rtml_common.events import Event, FeatureVector, Prediction, utcnow
from rtml_common.kafka.producer import EventProducer
from rtml_drift_monitor import service
from rtml_drift_monitor.checkpoint import CheckpointFile
from rtml_drift_monitor.config import Settings
from rtml_drift_monitor.reference import REFERENCE_ARTIFACT
from rtml_features.baseline import BASELINE
from rtml_models.aliases import CHAMPION
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_monitoring.reference import build_reference

pytestmark = pytest.mark.integration

NAMES = list(BASELINE.names)
T0 = datetime(2018, 6, 1, tzinfo=UTC)
HOURS = 10
DRIFT_HOURS = range(4, 7)
WINDOWS = {"WINDOW_S": "3600", "SLIDING_WINDOW_S": "10800", "ALLOWED_LATENESS_S": "0",
           "MIN_WINDOW_EVENTS": "100", "RETRAIN_COOLDOWN_S": "7200"}


def values(rows: int, seed: int, drift: bool) -> tuple[Any, Any]:
    """Feature rows (gamma amounts, flags) and scores; ``drift``: amounts x3, scores +0.3."""
    rng = np.random.default_rng(seed)
    frame = {name: rng.gamma(2.0, 20.0, rows) for name in NAMES}
    frame["tx_amount"] = rng.gamma(2.0, 25.0, rows) * (3.0 if drift else 1.0)
    frame["tx_during_weekend"] = (rng.random(rows) < 2 / 7).astype(float)
    frame["tx_during_night"] = (rng.random(rows) < 0.1).astype(float)
    scores = np.clip(rng.beta(2.0, 8.0, rows) + (0.3 if drift else 0.0), 0.0, 1.0)
    return frame, scores


def register_champion(registry: MlflowRegistry, name: str) -> str:
    """A version whose training run carries a reference; the champion alias on it."""
    import xgboost as xgb

    from rtml_models.xgboost import XGBoostModel

    frame, scores = values(20_000, 1, drift=False)
    import pandas as pd

    reference = build_reference(pd.DataFrame(frame), NAMES, scores, feature_set=BASELINE.name,
                                feature_set_version=BASELINE.version)
    client = registry.client
    experiment_id = client.create_experiment(name)
    run_id = client.create_run(experiment_id, run_name="train").info.run_id
    client.log_text(run_id, reference.to_json(), REFERENCE_ARTIFACT)
    client.set_terminated(run_id)
    rng = np.random.default_rng(0)
    rows = rng.gamma(2.0, 20.0, (300, len(NAMES)))
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2},
                        xgb.DMatrix(rows, label=(rows[:, 0] > 45).astype(float),
                                    feature_names=NAMES), 5)
    version = registry.register(name, XGBoostModel(booster), feature_set=BASELINE,
                                run_id=run_id).version
    registry.set_alias(name, CHAMPION, version)
    return str(version)


def stream(name: str, version: str, per_hour: int) -> list[list[Event]]:
    """Per transaction, in event-time order: its vector (+ a revision for 1 in 5), its score."""
    out: list[list[Event]] = []
    for hour in range(HOURS):
        frame, scores = values(per_hour, 100 + hour, hour in DRIFT_HOURS)
        for i in range(per_hour):
            at = T0 + timedelta(hours=hour) + (i + 0.5) * timedelta(hours=1) / per_hour
            tx, customer = f"{name}-{hour}-{i}", f"c{i % 40}"
            features = {n: float(frame[n][i]) for n in NAMES}
            vector = FeatureVector(transaction_id=tx, customer_id=customer, event_time=at,
                                   amount=features["tx_amount"], feature_set=BASELINE.name,
                                   feature_set_version=BASELINE.version, features=features,
                                   revision=0, computed_at=utcnow())
            events: list[Event] = [vector, Prediction(
                transaction_id=tx, customer_id=customer, event_time=at, model_name=name,
                model_version=version, score=float(scores[i]), latency_ms=1.0,
                scored_at=utcnow())]
            if i % 5 == 0:
                events.append(vector.model_copy(update={"revision": 1}))
            out.append(events)
    return out


def output_ids(bootstrap: str, faults: Any) -> Counter[str]:
    """Alert and retrain-request ids on their topics, with their number of copies."""
    ids: Counter[str] = Counter()
    for topic, field in (("drift-alerts", "alert_id"), ("retrain-requests", "request_id")):
        for record in faults.read_all(bootstrap, topic):
            ids[orjson.loads(record.value())[field]] += 1
    return ids


def test_drift_monitor_kill_9_counts_windows_once_and_publishes_alerts_once(
        faults: Any, service_process: Any, fault_report: Any, kafka_broker_factory: Any,
        mlflow_server: Any, tmp_path: Path) -> None:
    scale = faults.profile()
    name = f"drift-faults-{uuid.uuid4().hex[:8]}"
    broker = kafka_broker_factory(create_topics=True)
    bootstrap = broker.bootstrap_servers
    version = register_champion(MlflowRegistry(mlflow_server.tracking_uri), name)
    transactions = stream(name, version, max(scale.records // HOURS, 200))
    n = len(transactions)
    state_dir = tmp_path / "killed"
    checkpoint = CheckpointFile(state_dir / "checkpoint.json")
    monitor = service_process("rtml_drift_monitor", {
        "RTML_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RTML_KAFKA_SESSION_TIMEOUT_MS": str(faults.SESSION_TIMEOUT_MS),
        "RTML_MLFLOW_TRACKING_URI": mlflow_server.tracking_uri,
        "RTML_DRIFT_MONITOR_MODEL_NAME": name,
        "RTML_DRIFT_MONITOR_CONSUMER_GROUP": f"killed-{name}",
        "RTML_DRIFT_MONITOR_STATE_DIR": str(state_dir),
        "RTML_DRIFT_MONITOR_CHECKPOINT_INTERVAL_S": "0.5",
        **{f"RTML_DRIFT_MONITOR_{k}": v for k, v in WINDOWS.items()},
    })

    def consumed() -> int:
        """Input records the latest checkpoint covers (offsets start at 0 on this broker)."""
        saved = checkpoint.load()
        return sum(saved.offsets.values()) if saved else 0

    records_before = [0]
    for events in transactions:
        records_before.append(records_before[-1] + len(events))
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    producer = EventProducer(kafka)

    def send(i: int) -> None:
        for event in transactions[i]:
            producer.send(event)

    warm_up = 10
    for i in range(warm_up):
        send(i)
    producer.flush()
    monitor.start()
    faults.wait_until(lambda: consumed() >= records_before[warm_up], 120,
                      "the warm-up checkpointed", watch=[monitor])
    paced = faults.PacedProducer(send, producer.flush, n, scale.rate, first=warm_up)
    paced.start()
    recoveries: list[float] = []
    for round_ in range(1, scale.kill_rounds + 1):
        # Kills land inside the drifting hours (alerts and the request are around them).
        target = records_before[n * (4 + round_) // (HOURS + 1)]
        faults.wait_until(lambda t=target: consumed() >= t, 120, f"{target} records covered",
                          watch=[monitor])
        killed_at = monitor.kill9()
        produced_then = records_before[paced.produced]
        assert paced.produced < n, "the stream ended before the kill: not mid-stream"
        monitor.start()
        caught_up = faults.wait_until(lambda p=produced_then: consumed() >= p, 120,
                                      "the restarted monitor caught up", watch=[monitor])
        recoveries.append(caught_up - killed_at)
    paced.finish()
    producer.close()
    faults.wait_until(lambda: consumed() >= records_before[n], 120, "every record covered",
                      watch=[monitor])
    assert monitor.stop() == 0, monitor.tail()
    assert monitor.logged("restored checkpoint"), monitor.tail()
    killed_ids = output_ids(bootstrap, faults)
    killed_state = checkpoint.load()

    # The uninterrupted run: same service, same topics, its own group and state.
    reference = Settings(model_name=name, consumer_group=f"reference-{name}",
                         state_dir=tmp_path / "reference", checkpoint_interval_s=0.5,
                         **{k.lower(): v for k, v in WINDOWS.items()})
    run = service.run(reference, KafkaSettings(bootstrap_servers=bootstrap,
                                               session_timeout_ms=faults.SESSION_TIMEOUT_MS),
                      MlflowSettings(tracking_uri=mlflow_server.tracking_uri),
                      max_idle_s=scale.reference_idle_s,
                      install_signal_handlers=False, stop=threading.Event())
    reference_ids = output_ids(bootstrap, faults) - killed_ids
    reference_state = CheckpointFile(reference.checkpoint_path).load()

    assert run.alerts >= 2 and run.retrain_requests == 1, run  # the drift was seen
    duplicated = sum(c - 1 for c in killed_ids.values() if c > 1)
    lost = len(set(reference_ids) - set(killed_ids))
    extra = len(set(killed_ids) - set(reference_ids))
    assert killed_state is not None and reference_state is not None
    same_windows = killed_state.detector == reference_state.detector
    fault_report(faults.FaultResult(
        "drift monitor", "kill -9 mid-stream (in the drifting hours)", n, monitor.kills,
        lost, duplicated, recoveries,
        f"{len(reference_ids)} alert/request ids; final window state "
        f"{'equal to' if same_windows else 'DIFFERENT from'} the uninterrupted run's"))
    assert (lost, duplicated, extra) == (0, 0, 0), (killed_ids, reference_ids)
    assert same_windows
