"""Decisions computed at the request's event time equal the batch engine, through the app.

A small simulated history (customers, terminals, labels known before and
after the requests, out-of-order writes, simultaneous events) is written to a
real Redis as the feature pipeline writes it (:class:`PrefixLogWriter`);
requests go through ``POST /v1/decisions`` of a real service (Kafka, Redis,
MLflow champion) and each decision's ``inputs`` are read back from the
``decisions`` topic. Every feature must equal
:func:`rtml_features.batch.compute_features` over the history plus the request
within 1e-9, and the consistency markers the history's true counts; a
request older than a trimmed log answers degraded with ``out_of_range``. The
first check runs for each registered feature set, the service selecting it by
``RTML_DECISION_FEATURE_SET`` (the extended set's customer logs carry sparse
tables for its min / max and a label log for its known frauds).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import redis
import xgboost as xgb
from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient

from rtml_common.config import KafkaSettings, MlflowSettings, RedisSettings
from rtml_decision.config import Settings
from rtml_decision.wiring import build_service
from rtml_features.baseline import BASELINE
from rtml_features.batch import compute_features
from rtml_features.definitions import FeatureSet
from rtml_features.extended import EXTENDED
from rtml_features.online_store.redis.prefix_writer import EntityLogState, PrefixLogWriter
from rtml_features.request_vector import log_spec
from rtml_features.rows import epoch_ms
from rtml_localstack.environment import is_developer_setting
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.xgboost import XGBoostModel

pytestmark = pytest.mark.integration

RULES = """
name: request-time
version: "1"
rules:
  - {name: big_amount, when: "amount >= 100000", outcome: review, reason: LARGE_AMOUNT}
"""
DAY_MS = 86_400_000
ORIGIN = datetime(2026, 1, 1, tzinfo=UTC)
COLUMNS = ["transaction_id", "event_time", "customer_id", "terminal_id", "amount"]


def _model(feature_set: FeatureSet) -> XGBoostModel:
    rng = np.random.default_rng(0)
    rows = rng.random((200, len(feature_set.names))) * 10
    labels = (rows[:, 1] > 5).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                        xgb.DMatrix(rows, label=labels, feature_names=list(feature_set.names)),
                        num_boost_round=3)
    return XGBoostModel(booster)


@pytest.fixture
def feature_set() -> FeatureSet:
    """The set the service is configured with (a test parametrizes it to override)."""
    return BASELINE


@pytest.fixture
def rules_text() -> str:
    """The service's rule set (a test parametrizes it to override)."""
    return RULES


@pytest.fixture
def client(kafka_broker: Any, redis_server: Any, mlflow_server: Any, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch, feature_set: FeatureSet,
           rules_text: str) -> Iterator[TestClient]:
    for name in [n for n in os.environ if is_developer_setting(n)]:
        monkeypatch.delenv(name)
    if feature_set is not BASELINE:  # selected as a deployment selects it
        monkeypatch.setenv("RTML_DECISION_FEATURE_SET", feature_set.name)
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    model = f"request-time-{uuid.uuid4().hex[:8]}"
    registry.set_alias(model, "champion", registry.register(
        model, _model(feature_set), feature_set=feature_set).version)
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text)
    settings = Settings(model_name=model, rules_path=rules, fallback_rules_path=rules)
    assert settings.feature_set == feature_set.name
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers)
    service = build_service(settings, kafka, RedisSettings(url=redis_server.url),
                            MlflowSettings(tracking_uri=mlflow_server.tracking_uri), None,
                            watch_models=False)
    with TestClient(service.app()) as test_client:
        yield test_client


def decisions_inputs(bootstrap: str, ids: set[str], timeout_s: float = 60.0
                     ) -> dict[str, dict[str, Any]]:
    """transaction id -> the Decision value of each id, read from the ``decisions`` topic."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    found: dict[str, dict[str, Any]] = {}
    try:
        metadata = consumer.list_topics("decisions", timeout=10)
        consumer.assign([TopicPartition("decisions", p, 0)
                         for p in metadata.topics["decisions"].partitions])
        deadline = time.monotonic() + timeout_s
        while len(found) < len(ids) and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error() or message.value() is None:
                    continue
                value = orjson.loads(message.value())
                if value.get("transaction_id") in ids:
                    found[value["transaction_id"]] = value
    finally:
        consumer.close()
    assert set(found) == ids, f"{len(ids) - len(found)} decisions not on the topic"
    return found


#: A rule over a feature of the served set that is not a standard input: declared.
EXTREMES_RULES = """
name: extremes
version: "1"
inputs:
  customer_id_max_amount_30day_window: number
rules:
  - {name: big_month, when: "customer_id_max_amount_30day_window >= 1000", outcome: review,
     reason: LARGE_MONTH}
"""


@pytest.mark.parametrize(("feature_set", "rules_text"), [(EXTENDED, EXTREMES_RULES)],
                         ids=["extended"])
def test_a_rule_reads_a_feature_of_the_served_set_it_declares(
        client: TestClient, redis_server: Any, feature_set: FeatureSet) -> None:
    """The decision context holds every feature of the configured set, so a rule set that
    declares the ``extended`` set's 30-day max amount decides on its request-time value:
    a payment of 5,000 puts the card's month max above 1,000 (the window holds the payment
    itself), one of 10 leaves it at the history's (all below 1,000)."""
    prefix = uuid.uuid4().hex[:8]
    history, labels = simulate(prefix)
    assert history["amount"].max() < 1000
    write_logs(redis_server.client(), history, labels, np.arange(len(history)),
               feature_set=feature_set)
    base = {"event_time": (history["event_time"].max() + timedelta(hours=1)).isoformat(),
            "customer_id": history["customer_id"].iloc[-1],
            "terminal_id": history["terminal_id"].iloc[-1]}
    small = client.post("/v1/decisions", json={**base, "transaction_id": f"{prefix}-small",
                                              "amount": 10.0})
    large = client.post("/v1/decisions", json={**base, "transaction_id": f"{prefix}-large",
                                              "amount": 5000.0})
    assert small.status_code == large.status_code == 200, (small.text, large.text)
    assert small.json()["outcome"] == "approve", small.json()
    assert large.json()["outcome"] == "review", large.json()
    assert "LARGE_MONTH" in str(large.json()), large.json()


def simulate(prefix: str, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """50 days of 4 customers on 3 terminals; a fifth of them fraud, labelled 0-12 days later."""
    rng = np.random.default_rng(seed)
    n = 400
    times = np.sort(rng.integers(0, 50 * DAY_MS, n))
    times[50:60] = times[50]  # simultaneous events (one ms)
    history = pd.DataFrame({
        "transaction_id": [f"{prefix}-h{i}" for i in range(n)],
        "event_time": [ORIGIN + timedelta(milliseconds=int(t)) for t in times],
        "customer_id": [f"{prefix}-c{i}" for i in rng.integers(0, 4, n)],
        "terminal_id": [f"{prefix}-t{i}" for i in rng.integers(0, 3, n)],
        "amount": np.round(rng.gamma(2.0, 40.0, n), 2),
    })
    fraud = rng.random(n) < 0.2
    labels = pd.DataFrame({
        "transaction_id": history["transaction_id"][fraud].to_numpy(),
        "labeled_at": [t + timedelta(milliseconds=int(d)) for t, d in
                       zip(history["event_time"][fraud], rng.integers(0, 12 * DAY_MS,
                                                                      int(fraud.sum())),
                           strict=True)],
        "is_fraud": 1,
    })
    return history, labels


def write_logs(client: redis.Redis, history: pd.DataFrame, labels: pd.DataFrame,
               order: np.ndarray, trim_ms: dict[str, int] | None = None,
               feature_set: FeatureSet = BASELINE) -> None:
    """The history's prefix logs as the pipeline writes them, events in ``order``."""
    states: dict[tuple[str, str], EntityLogState] = {}
    by_id = history.set_index("transaction_id")
    writer = PrefixLogWriter(client, feature_set, ttl_s=3600)

    def state(entity: Any, entity_id: str) -> EntityLogState:
        key = (entity.name, entity_id)
        if key not in states:
            states[key] = EntityLogState(log_spec(feature_set, entity))
        return states[key]

    for chunk in np.array_split(order, 5):  # several writes: diffs span batches
        for i in chunk:
            row = history.iloc[int(i)]
            for entity in feature_set.entities:
                state(entity, row[entity.key]).add_event(
                    row["transaction_id"], epoch_ms(row["event_time"]), {"amount": row["amount"]})
        writer.write([(name, entity_id, s) for (name, entity_id), s in states.items()])
    for label in labels.itertuples():
        row = by_id.loc[label.transaction_id]
        for entity in feature_set.entities:
            state(entity, row[entity.key]).add_label(
                label.transaction_id, epoch_ms(row["event_time"]), epoch_ms(label.labeled_at),
                {"is_fraud": float(label.is_fraud)})
    for (name, entity_id), cutoff in (trim_ms or {}).items():
        states[name, entity_id].trim(cutoff)  # type: ignore[index]
    writer.write([(name, entity_id, s) for (name, entity_id), s in states.items()])


def batch_vector(history: pd.DataFrame, labels: pd.DataFrame, request: dict[str, Any],
                 feature_set: FeatureSet = BASELINE) -> dict[str, float]:
    row = {**request, "event_time": datetime.fromisoformat(request["event_time"])}
    spine = pd.DataFrame([row], columns=COLUMNS)
    full = history if request["transaction_id"] in set(history["transaction_id"]) \
        else pd.concat([history, spine], ignore_index=True)
    result = compute_features(feature_set, spine, full, labels)
    return {name: float(result[name].iloc[0]) for name in feature_set.names}


def true_markers(history: pd.DataFrame, labels: pd.DataFrame, request: dict[str, Any],
                 feature_set: FeatureSet = BASELINE) -> dict[str, float]:
    t = datetime.fromisoformat(request["event_time"])
    known = labels[labels["labeled_at"] <= t].set_index("transaction_id")["is_fraud"]
    out: dict[str, float] = {}
    for entity in feature_set.entities:
        if request[entity.key] is None:
            continue
        horizon = feature_set.horizon(entity)
        seen = history[(history[entity.key] == request[entity.key])
                       & (history["event_time"] > t - horizon) & (history["event_time"] <= t)
                       & (history["transaction_id"] != request["transaction_id"])]
        out[f"rtml_seen_events_{entity.name}"] = float(len(seen))
        # labels are held (and counted) only for an entity with label-delayed aggregates
        out[f"rtml_seen_labels_{entity.name}"] = float(
            known.reindex(seen["transaction_id"]).fillna(0).sum()) \
            if log_spec(feature_set, entity).label_fields else 0.0
    return out


@pytest.mark.parametrize("feature_set", [BASELINE, EXTENDED], ids=lambda fs: fs.name)
def test_every_feature_equals_the_batch_engine_and_the_markers_the_true_counts(
        client: TestClient, redis_server: Any, kafka_broker: Any,
        feature_set: FeatureSet) -> None:
    prefix = uuid.uuid4().hex[:8]
    history, labels = simulate(prefix)
    rng = np.random.default_rng(3)
    plain = redis_server.client()
    write_logs(plain, history, labels, rng.permutation(len(history)),  # out of order
               feature_set=feature_set)
    requests: list[dict[str, Any]] = []
    for i in range(30):  # new transactions, between and after the history's events
        t = ORIGIN + timedelta(milliseconds=int(rng.integers(2 * DAY_MS, 52 * DAY_MS)))
        requests.append({"transaction_id": f"{prefix}-r{i}", "event_time": t.isoformat(),
                         "customer_id": f"{prefix}-c{rng.integers(0, 5)}",  # c4: unseen
                         "terminal_id": None if i % 10 == 9 else f"{prefix}-t{rng.integers(0, 3)}",
                         "amount": float(np.round(rng.gamma(2.0, 40.0), 2))})
    requests.append({**requests[0], "transaction_id": f"{prefix}-same-ms",
                     "event_time": history["event_time"][50].isoformat()})
    for i in (55, 120, 399):  # transactions the stream applied before they were decided
        row = history.iloc[i]
        requests.append({"transaction_id": row["transaction_id"],
                         "event_time": row["event_time"].isoformat(),
                         "customer_id": row["customer_id"], "terminal_id": row["terminal_id"],
                         "amount": float(row["amount"])})
    for request in requests:
        response = client.post("/v1/decisions", json=request)
        assert response.status_code == 200, response.text
        assert response.json()["degraded"] is False, response.json()["degraded_reason"]

    published = decisions_inputs(kafka_broker.bootstrap_servers,
                                 {r["transaction_id"] for r in requests})
    worst = 0.0
    label_markers = 0.0
    for request in requests:
        inputs = published[request["transaction_id"]]["inputs"]
        expected = batch_vector(history, labels, request, feature_set)
        assert list(expected) == feature_set.names
        for name, value in expected.items():
            assert abs(inputs[name] - value) <= 1e-9, (request, name, inputs[name], value)
            worst = max(worst, abs(inputs[name] - value))
        markers = true_markers(history, labels, request, feature_set)
        assert {k: v for k, v in inputs.items() if k.startswith("rtml_seen_")} == markers
        label_markers += markers.get("rtml_seen_labels_terminal", 0.0)
    assert label_markers > 0  # labels known by t were counted somewhere
    # the data exercise "known by t": a label-delayed window of some request holds an
    # event whose label the store has but was known only after the request
    labelled = labels.merge(history, on="transaction_id")

    def has_later_label(request: dict[str, Any]) -> bool:
        t = datetime.fromisoformat(request["event_time"])
        return bool(((labelled["terminal_id"] == request["terminal_id"])
                     & (labelled["labeled_at"] > t)
                     & (labelled["event_time"] > t - timedelta(days=37))
                     & (labelled["event_time"] <= t - timedelta(days=7))).any())

    assert any(has_later_label(r) for r in requests)
    plain.close()


def test_a_request_older_than_the_trimmed_logs_is_degraded_out_of_range(
        client: TestClient, redis_server: Any, kafka_broker: Any) -> None:
    prefix = uuid.uuid4().hex[:8]
    history, labels = simulate(prefix, seed=11)
    plain = redis_server.client()
    customer = f"{prefix}-c0"
    write_logs(plain, history, labels, np.arange(len(history)),
               trim_ms={("customer", customer): epoch_ms(ORIGIN) + 45 * DAY_MS})
    old = {"transaction_id": f"{prefix}-old", "customer_id": customer,
           "event_time": (ORIGIN + timedelta(days=40)).isoformat(),
           "terminal_id": f"{prefix}-t0", "amount": 10.0}
    recent = {**old, "transaction_id": f"{prefix}-recent",
              "event_time": (ORIGIN + timedelta(days=80)).isoformat()}

    answers = {r["transaction_id"]: client.post("/v1/decisions", json=r).json()
               for r in (old, recent)}

    assert answers[old["transaction_id"]]["degraded"] is True
    assert answers[old["transaction_id"]]["degraded_reason"] == "out_of_range"
    assert answers[recent["transaction_id"]]["degraded"] is False
    published = decisions_inputs(kafka_broker.bootstrap_servers, set(answers))
    degraded = published[old["transaction_id"]]["inputs"]
    assert "customer_id_nb_tx_1day_window" not in degraded and degraded["tx_amount"] == 10.0
    expected = batch_vector(history, labels, recent)
    served = published[recent["transaction_id"]]["inputs"]
    assert all(abs(served[n] - v) <= 1e-9 for n, v in expected.items())
    plain.close()
