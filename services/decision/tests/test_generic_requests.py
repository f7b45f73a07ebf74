"""Decisions for a set that is not classic (the payments example) equal the batch engine.

A real service (Kafka, Redis, MLflow champion) serves ``RTML_DECISION_FEATURE_SET=payments``
from ``RTML_FEATURE_REPO=examples/feature_repos/payments``. A history of payments
(devices, IP addresses, merchant categories, countries, channels; labels known before
and after the requests) is written to a real Redis as the feature pipeline writes the
generic layout (:class:`GenericOnlineWriter`), then later payments are decided through
``POST /v1/decisions``; each decision's ``inputs`` are read back from the ``decisions``
topic and every feature must equal :func:`rtml_features.batch.compute_features` over the
history plus that payment to 1e-9 — also for a payment the stream had applied before
its request (counted once) and one without terminal or IP address —, and the same for
the baseline's classic definitions over the payment schema (``classic_payments``). A
retry returns the same body, an undeclared category is a 422 naming the field, and rules over the
declared ``channel`` and a new feature decide; the transaction goes out on the
schema's topic with the generated model's headers. End to end: the feature pipeline's
worker (payments produced to Kafka) writes the layout the API then decides from.
"""

from __future__ import annotations

import math
import os
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import xgboost as xgb
from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient

from rtml_common.config import KafkaSettings, MlflowSettings, RedisSettings
from rtml_common.schema_models import event_model
from rtml_common.serde import EVENT_TYPE_HEADER, SCHEMA_VERSION_HEADER
from rtml_decision.config import Settings
from rtml_decision.wiring import build_service
from rtml_features.baseline import BASELINE, REGISTRY, get_feature_set
from rtml_features.batch import compute_features
from rtml_features.definitions import FeatureSet
from rtml_features.online_store.redis.generic_writer import GenericOnlineWriter
from rtml_features.repo import FEATURE_REPO_ENV
from rtml_features.rows import epoch_ms
from rtml_localstack.environment import is_developer_setting
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.xgboost import XGBoostModel

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3] / "examples" / "feature_repos" / "payments"
RULES = """
name: payments
version: "1"
rules:
  - {name: web, when: "channel == 'web'", outcome: review, reason: WEB_CHANNEL}
  - {name: many, when: "FEATURE >= 3", outcome: decline, reason: MANY}
"""
#: The rules' feature of each served set: a new aggregation (count_distinct over a
#: compound-free entity) for payments, a baseline count for the classic set.
RULE_FEATURE = {"payments": "card_distinct_devices_1day",
                "classic_payments": "customer_id_nb_tx_1day_window"}
DAY_MS = 86_400_000
ORIGIN = datetime(2026, 1, 1, tzinfo=UTC)
CATEGORIES = ["grocery", "fuel", "travel", "gaming"]


@pytest.fixture(params=["payments"])
def payments(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> FeatureSet:
    """The served set: ``payments`` of the example repo, or (parametrized)
    ``classic_payments``: the baseline's definitions over the payment schema."""
    for name in [n for n in os.environ if is_developer_setting(n)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv(FEATURE_REPO_ENV, str(REPO))
    name = request.param
    monkeypatch.setenv("RTML_DECISION_FEATURE_SET", name)
    if name == "classic_payments":
        schema = get_feature_set("payments").schema
        monkeypatch.setitem(REGISTRY, name, FeatureSet(name, BASELINE.features, schema=schema))
    return get_feature_set(name)


def _model(feature_set: FeatureSet) -> XGBoostModel:
    rng = np.random.default_rng(0)
    rows = rng.random((200, len(feature_set.names))) * 10
    labels = (rows[:, 3] > 5).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                        xgb.DMatrix(rows, label=labels, feature_names=list(feature_set.names)),
                        num_boost_round=3)
    return XGBoostModel(booster)


@pytest.fixture
def client(payments: FeatureSet, kafka_broker: Any, redis_server: Any, mlflow_server: Any,
           tmp_path: Path) -> Iterator[TestClient]:
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    model = f"generic-{uuid.uuid4().hex[:8]}"
    registry.set_alias(model, "champion", registry.register(
        model, _model(payments), feature_set=payments).version)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.replace("FEATURE", RULE_FEATURE.get(payments.name, "tx_amount")))
    settings = Settings(model_name=model, rules_path=rules, fallback_rules_path=rules)
    assert settings.feature_set == payments.name
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers)
    service = build_service(settings, kafka, RedisSettings(url=redis_server.url),
                            MlflowSettings(tracking_uri=mlflow_server.tracking_uri), None,
                            watch_models=False)
    assert service.engine.generic
    with TestClient(service.app()) as test_client:
        yield test_client


def payment(rnd: random.Random, prefix: str, i: int, time_ms: int,
            optional: bool = True) -> dict[str, Any]:
    """A payment as the pipeline's writer takes it (time as epoch ms)."""
    event: dict[str, Any] = {
        "transaction_id": f"{prefix}-p{i}", "event_time": time_ms,
        "customer_id": f"{prefix}-c{rnd.randrange(3)}",
        "device_id": f"{prefix}-d{rnd.randrange(5)}",
        "amount": round(rnd.uniform(1, 500), 2),
        "merchant_category": rnd.choice(CATEGORIES),
        "country": rnd.choice(["FR", "DE"]), "channel": rnd.choice(["pos", "web", "app"]),
    }
    if optional and rnd.random() < 0.85:
        event["terminal_id"] = f"{prefix}-m{rnd.randrange(4)}"
    if optional and rnd.random() < 0.6:
        event["ip_address"] = f"{prefix}-10.0.0.{rnd.randrange(4)}"
    return event


def history(prefix: str, n: int = 250, seed: int = 11
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """40 days of payments (some simultaneous), a fifth fraud, labelled 0-12 days later."""
    rnd = random.Random(seed)
    start = epoch_ms(ORIGIN)
    times = sorted(start + rnd.randrange(40 * DAY_MS) for _ in range(n))
    times[30:36] = [times[30]] * 6
    events = [payment(rnd, prefix, i, t) for i, t in enumerate(times)]
    labels = [{"transaction_id": e["transaction_id"],
               "labeled_at": e["event_time"] + rnd.randrange(12 * DAY_MS), "is_fraud": 1}
              for e in events if rnd.random() < 0.2]
    return events, labels


def expected_vector(feature_set: FeatureSet, events: list[dict[str, Any]],
                    labels: list[dict[str, Any]], request: dict[str, Any]) -> dict[str, float]:
    """The batch engine's vector of ``request`` over ``events`` plus the request."""
    schema = feature_set.schema

    def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
        out = pd.DataFrame([{name: row.get(name) for name in schema.names} for row in rows])
        out["event_time"] = pd.to_datetime(out["event_time"], unit="ms", utc=True)
        return out

    known = pd.DataFrame(labels)
    known["labeled_at"] = pd.to_datetime(known["labeled_at"], unit="ms", utc=True)
    result = compute_features(feature_set, frame([request]), frame([*events, request]), known)
    values = result.iloc[0, -len(feature_set.names):]
    return {name: float(value) for name, value in zip(feature_set.names, values, strict=True)}


def body(event: dict[str, Any]) -> dict[str, Any]:
    """The request body of ``event`` (time as ISO 8601)."""
    moment = datetime.fromtimestamp(event["event_time"] / 1000, UTC)
    return {**event, "event_time": moment.isoformat().replace("+00:00", "Z")}


def consumed(bootstrap: str, topic: str, ids: set[str], timeout_s: float = 60.0
             ) -> dict[str, tuple[dict[str, Any], dict[str, bytes], bytes]]:
    """transaction id -> (value, headers, key) of each id's record on ``topic``."""
    import time

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    found: dict[str, tuple[dict[str, Any], dict[str, bytes], bytes]] = {}
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        consumer.assign([TopicPartition(topic, p, 0)
                         for p in metadata.topics[topic].partitions])
        deadline = time.monotonic() + timeout_s
        while len(found) < len(ids) and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error() or message.value() is None:
                    continue
                value = orjson.loads(message.value())
                if value.get("transaction_id") in ids:
                    found[value["transaction_id"]] = (
                        value, dict(message.headers() or []), message.key())
    finally:
        consumer.close()
    assert set(found) == ids, f"{len(ids) - len(found)} records not on {topic}"
    return found


def mismatches(got: dict[str, Any], expected: dict[str, float]) -> list[str]:
    return [f"{name}: {got.get(name)!r} != {value!r}" for name, value in expected.items()
            if not isinstance(got.get(name), int | float)
            or not math.isclose(got[name], value, rel_tol=1e-9, abs_tol=1e-9)]


@pytest.mark.parametrize("payments", ["payments", "classic_payments"], indirect=True)
def test_payments_decisions_equal_the_batch_engine(client: TestClient, payments: FeatureSet,
                                                   redis_server: Any,
                                                   kafka_broker: Any) -> None:
    prefix = uuid.uuid4().hex[:8]
    events, labels = history(prefix)
    writer = GenericOnlineWriter(payments, ttl_s=3_600, lateness_ms=60 * DAY_MS)
    for event in events:
        writer.apply_event(event)
    for label in labels:
        writer.apply_label(label["transaction_id"], label["labeled_at"],
                           {"is_fraud": label["is_fraud"]})
    redis = redis_server.client()
    writer.flush(redis)

    rnd = random.Random(3)
    end = max(e["event_time"] for e in events)
    requests = [payment(rnd, prefix, 1000 + i, end + (i + 1) * 7 * 60_000, optional=i != 4)
                for i in range(14)]
    requests[5]["event_time"] = requests[4]["event_time"]  # simultaneous requests
    requests[6]["device_id"] = requests[3]["device_id"]
    requests[6]["customer_id"] = requests[3]["customer_id"]
    # the stream applied this one before its request: counted once all the same
    writer.apply_event(requests[9])
    writer.flush(redis)

    answers = {}
    for request in requests:
        answer = client.post("/v1/decisions", json=body(request))
        assert answer.status_code == 200, answer.text
        assert answer.json()["degraded"] is False, answer.json()
        answers[request["transaction_id"]] = answer
    ids = set(answers)
    decisions = consumed(kafka_broker.bootstrap_servers, "decisions", ids)
    problems = []
    for request in requests:
        tid = request["transaction_id"]
        stored = [*events, *(r for r in [requests[9]] if r is not request)]
        expected = expected_vector(payments, stored, labels, request)
        inputs = decisions[tid][0]["inputs"]
        problems += [(tid, problem) for problem in mismatches(inputs, expected)]
        assert inputs["channel"] == request["channel"]
        assert inputs["ip_address"] == request.get("ip_address")
        decision = answers[tid].json()
        fired = {rule["rule"] for rule in decision["fired_rules"]}
        assert ("web" in fired) == (request["channel"] == "web"), (tid, decision)
        many = expected[RULE_FEATURE[payments.name]] >= 3
        assert ("many" in fired) == many, (tid, decision)
        assert decision["outcome"] == ("decline" if many else "review"
                                       if request["channel"] == "web" else "approve")
        assert decisions[tid][0]["customer_id"] == request["customer_id"]
    assert not problems, problems[:10]
    outcomes = {answer.json()["outcome"] for answer in answers.values()}
    assert outcomes == {"approve", "review", "decline"}, outcomes

    # the transactions went out as the schema's events, keyed by the partition key
    published = consumed(kafka_broker.bootstrap_servers, payments.schema.topic, ids)
    model = event_model(payments.schema)
    for request in requests:
        value, headers, key = published[request["transaction_id"]]
        assert model.model_validate(value).model_dump(mode="json") == \
            model.model_validate(body(request)).model_dump(mode="json")
        assert headers[EVENT_TYPE_HEADER] == model.__name__.encode()
        assert headers[SCHEMA_VERSION_HEADER] == model.schema_version.encode()
        assert key == request["customer_id"].encode()


def test_a_retry_returns_the_same_body_and_a_changed_field_conflicts(
        client: TestClient, payments: FeatureSet) -> None:
    prefix = uuid.uuid4().hex[:8]
    request = body(payment(random.Random(1), prefix, 1, epoch_ms(ORIGIN)))
    first = client.post("/v1/decisions", json=request)
    again = client.post("/v1/decisions", json=request)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert again.content == first.content
    assert again.headers.get("idempotent-replay") == "true"
    other = "app" if request["channel"] != "app" else "web"
    changed = client.post("/v1/decisions", json={**request, "channel": other})
    assert changed.status_code == 409, changed.text
    assert "value of another field" in changed.json()["detail"]


def test_an_undeclared_category_is_a_422_naming_the_field(client: TestClient) -> None:
    request = body(payment(random.Random(2), uuid.uuid4().hex[:8], 1, epoch_ms(ORIGIN)))
    refused = client.post("/v1/decisions", json={**request, "merchant_category": "casino"})
    assert refused.status_code == 422, refused.text
    assert "merchant_category" in refused.json()["detail"]
    missing = client.post("/v1/decisions",
                          json={k: v for k, v in request.items() if k != "device_id"})
    assert missing.status_code == 422 and "device_id" in missing.json()["detail"]



def test_decisions_over_what_the_feature_pipeline_wrote_equal_the_batch_engine(
        fresh_kafka_broker: Any, fresh_redis_server: Any, mlflow_server: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: a rich simulation's payments and labels produced to Kafka, the feature
    pipeline's worker (``kafka_engine.run``, payments set) writing the generic layout, then
    later payments decided through the API over what it wrote: every logged feature equals
    ``compute_features`` over the simulation plus the request, to 1e-9."""
    from rtml_feature_pipeline import kafka_engine
    from rtml_feature_pipeline.config import Settings as PipelineSettings
    from rtml_feature_pipeline.generic_parity import produce, rich_data, schedule

    for name in [n for n in os.environ if is_developer_setting(n)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv(FEATURE_REPO_ENV, str(REPO))
    monkeypatch.setenv("RTML_DECISION_FEATURE_SET", "payments")
    feature_set = get_feature_set("payments")
    data = rich_data()
    kafka = KafkaSettings(bootstrap_servers=fresh_kafka_broker.bootstrap_servers,
                          session_timeout_ms=6000)
    redis_settings = RedisSettings(url=fresh_redis_server.url)
    records = schedule(feature_set, data)
    produce(kafka, records)
    run = kafka_engine.run(PipelineSettings(feature_set="payments", online_layout="prefix",
                                            allowed_lateness_s=300,
                                            consumer_group="decision-e2e"),
                           kafka, redis_settings, max_idle_s=2, install_signal_handlers=False)
    assert run.events_applied == len(records)  # payments and labels

    registry = MlflowRegistry(mlflow_server.tracking_uri)
    model = f"generic-e2e-{uuid.uuid4().hex[:8]}"
    registry.set_alias(model, "champion", registry.register(
        model, _model(feature_set), feature_set=feature_set).version)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.replace("FEATURE", RULE_FEATURE["payments"]))
    service = build_service(Settings(model_name=model, rules_path=rules,
                                     fallback_rules_path=rules),
                            kafka, redis_settings,
                            MlflowSettings(tracking_uri=mlflow_server.tracking_uri), None,
                            watch_models=False)
    events = data.events()
    end = max(e["event_time"] for e in events)
    rnd = random.Random(9)
    requests = []
    for i in range(20):  # later payments of known cards, devices, terminals, addresses
        like = rnd.choice(events)
        requests.append({**like, "transaction_id": f"e2e-{i}",
                         "event_time": epoch_ms(end) + (i + 1) * 3 * 60_000,
                         "amount": round(rnd.uniform(1, 400), 2)})
    with TestClient(service.app()) as client:
        for request in requests:
            answer = client.post("/v1/decisions", json=body(request))
            assert answer.status_code == 200, answer.text
            assert answer.json()["degraded"] is False, answer.json()
    decisions = consumed(kafka.bootstrap_servers, "decisions",
                         {r["transaction_id"] for r in requests})
    history = data.history
    labels = data.labels
    problems = []
    for request in requests:
        row = pd.DataFrame([{name: request.get(name) for name in history.columns}])
        row["event_time"] = pd.to_datetime(row["event_time"], unit="ms", utc=True).astype(
            history["event_time"].dtype)
        both = pd.concat([history, row], ignore_index=True)
        result = compute_features(feature_set, both.iloc[[-1]], both, labels)
        expected = {name: float(v) for name, v in zip(
            feature_set.names, result.iloc[0, -len(feature_set.names):], strict=True)}
        problems += [(request["transaction_id"], p)
                     for p in mismatches(decisions[request["transaction_id"]][0]["inputs"],
                                         expected)]
    assert not problems, problems[:10]
