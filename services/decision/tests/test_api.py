"""The decision API end to end against real Kafka, Redis, MLflow and Cassandra.

Covers a full decision (features fetched in one round trip, score,
contributions, fired rules, outputs on ``decisions`` and ``transactions``,
the row in the decision log), idempotent retries, precise 422s, degraded
mode (Redis unreachable, no champion), rule upload (validation, hot reload,
admin key) and the backtest endpoint. No timing is asserted.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import redis
import xgboost as xgb
from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient
from pydantic import SecretStr

from rtml_common.config import CassandraSettings, KafkaSettings, MlflowSettings, RedisSettings
from rtml_decision.config import Settings
from rtml_decision.wiring import Service, build_service
from rtml_features.baseline import BASELINE
from rtml_features.online_store.redis.prefix_writer import EntityLogState, PrefixLogWriter
from rtml_features.request_vector import log_spec
from rtml_features.rows import epoch_ms
from rtml_localstack.environment import is_developer_setting
from rtml_localstack.ports import free_port
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.xgboost import XGBoostModel

pytestmark = pytest.mark.integration

PRIMARY_RULES = """
name: test-primary
version: "1"
rules:
  - {name: high_score, when: "score >= 0.9", outcome: decline, reason: SCORE_HIGH}
  - {name: big_amount, when: "amount >= 1000", outcome: review, reason: LARGE_AMOUNT}
  - {name: busy_customer, when: "customer_id_nb_tx_1day_window >= 5", outcome: review,
     reason: BUSY_CUSTOMER}
"""

FALLBACK_RULES = """
name: test-fallback
version: "1"
rules:
  - {name: fallback_big_amount, when: "amount >= 500", outcome: review,
     reason: FALLBACK_LARGE_AMOUNT}
"""

ADMIN_KEY = "test-admin-key-0123456789"


def train_model(seed: int = 0) -> XGBoostModel:
    """A small booster on the 15 baseline names whose score rises with the customer count."""
    rng = np.random.default_rng(seed)
    rows = rng.random((400, len(BASELINE.names))) * 10
    labels = (rows[:, BASELINE.names.index("customer_id_nb_tx_1day_window")] > 7).astype(float)
    matrix = xgb.DMatrix(rows, label=labels, feature_names=list(BASELINE.names))
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                        matrix, num_boost_round=10)
    return XGBoostModel(booster)


@pytest.fixture(scope="session")
def registered_model(mlflow_server: Any) -> tuple[str, MlflowRegistry]:
    """A model name with a champion and a challenger (different seeds)."""
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    name = f"decision-test-{uuid.uuid4().hex[:8]}"
    champion = registry.register(name, train_model(0), feature_set=BASELINE)
    challenger = registry.register(name, train_model(1), feature_set=BASELINE)
    registry.set_alias(name, "champion", champion.version)
    registry.set_alias(name, "challenger", challenger.version)
    return name, registry


@pytest.fixture
def rule_files(tmp_path: Path) -> tuple[Path, Path]:
    primary, fallback = tmp_path / "primary.yaml", tmp_path / "fallback.yaml"
    primary.write_text(PRIMARY_RULES)
    fallback.write_text(FALLBACK_RULES)
    return primary, fallback


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def records_with(bootstrap: str, topic: str, ids: set[str], timeout_s: float = 20.0,
                 settle_s: float = 0.0) -> list[dict[str, Any]]:
    """Every record of ``topic`` whose value's transaction_id is in ``ids``.

    Reads all partitions from the beginning until each id was seen, then
    keeps reading ``settle_s`` more seconds (to catch duplicates).
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("t"),
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = [TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions]
        consumer.assign(partitions)
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        settle_until: float | None = None
        while time.monotonic() < deadline:
            if settle_until is not None and time.monotonic() > settle_until:
                break
            for message in consumer.consume(500, timeout=0.5):
                if message.error() or message.value() is None:
                    continue
                value = orjson.loads(message.value())
                if value.get("transaction_id") in ids:
                    found.append({"value": value, "headers": dict(message.headers() or [])})
            seen = {r["value"]["transaction_id"] for r in found}
            if seen >= ids and settle_until is None:
                settle_until = time.monotonic() + settle_s
        return found
    finally:
        consumer.close()


def wait_for(condition: Callable[[], Any], timeout_s: float = 30.0, interval_s: float = 0.2
             ) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval_s)


@pytest.fixture
def no_rtml_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in [n for n in os.environ if is_developer_setting(n)]:
        monkeypatch.delenv(name)
    yield

ServiceFactory = Callable[..., tuple[Service, TestClient]]


@pytest.fixture
def make_service(kafka_broker: Any, redis_server: Any, mlflow_server: Any,
                 cassandra_server: Any, registered_model: Any, rule_files: tuple[Path, Path],
                 no_rtml_env: None) -> Iterator[ServiceFactory]:
    started: list[TestClient] = []
    table = unique("log").replace("-", "_")
    # one shared rule store per test: the services a test builds share it, other tests don't
    rules_prefix = f"rtml:{unique('test-rules')}:"

    def factory(*, redis_url: str | None = None, model_name: str | None = None,
                cassandra: bool = False, **overrides: Any) -> tuple[Service, TestClient]:
        overrides.setdefault("rules_key_prefix", rules_prefix)
        settings = Settings(model_name=model_name or registered_model[0],
                            rules_path=rule_files[0], fallback_rules_path=rule_files[1],
                            admin_api_key=SecretStr(ADMIN_KEY), **overrides)
        service = build_service(
            settings, KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers),
            RedisSettings(url=redis_url or redis_server.url),
            MlflowSettings(tracking_uri=mlflow_server.tracking_uri),
            CassandraSettings(contact_points=cassandra_server.host, port=cassandra_server.port)
            if cassandra else None,
            watch_models=False, log_table=table, log_group=unique("writer"))
        client = TestClient(service.app())
        client.__enter__()
        started.append(client)
        return service, client

    yield factory
    for client in started:
        client.__exit__(None, None, None)


def transaction(**overrides: Any) -> dict[str, Any]:
    body = {"transaction_id": unique("tx"), "event_time": datetime.now(UTC).isoformat(),
            "customer_id": unique("c"), "terminal_id": unique("t"), "amount": 42.5}
    body.update(overrides)
    return body


def put_history(redis_url: str, body: dict[str, Any], customer_count: int) -> None:
    """Prefix logs holding ``customer_count - 1`` earlier transactions of the customer
    within a day before ``body`` (its 1-day count is then ``customer_count``) and one of
    the terminal 10 days before it (in its label-delayed windows), labelled fraud."""
    client = redis.Redis.from_url(redis_url)
    t = epoch_ms(datetime.fromisoformat(body["event_time"]))
    customer, terminal = (EntityLogState(log_spec(BASELINE, e)) for e in BASELINE.entities)
    for i in range(customer_count - 1):
        customer.add_event(f"prev-c{i}", t - 60_000 * (i + 1), {"amount": 3.0})
    terminal.add_event("prev-t", t - 10 * 86_400_000, {"amount": 3.0})
    terminal.add_label("prev-t", t - 10 * 86_400_000, t - 9 * 86_400_000, {"is_fraud": 1.0})
    PrefixLogWriter(client, BASELINE, ttl_s=3600).write(
        [("customer", body["customer_id"], customer), ("terminal", body["terminal_id"], terminal)])
    client.close()


def test_decision_end_to_end(make_service: ServiceFactory, redis_server: Any,
                             kafka_broker: Any) -> None:
    service, client = make_service(cassandra=True)
    body = transaction(amount=1500.0)
    put_history(redis_server.url, body, customer_count=9)

    response = client.post("/v1/decisions", json=body)

    assert response.status_code == 200, response.text
    decision = response.json()
    assert decision["transaction_id"] == body["transaction_id"]
    assert decision["degraded"] is False and decision["degraded_reason"] is None, \
        decision["degraded_reason"]
    assert decision["score"] > 0.5  # the model's score rises with the customer count (9)
    assert decision["model_version"] == service.engine.serving.current.champion.version
    assert decision["arm"] == "champion"
    assert decision["rule_set"] == "test-primary"
    fired = {f["rule"]: f["reason_code"] for f in decision["fired_rules"]}
    assert fired["big_amount"] == "LARGE_AMOUNT" and fired["busy_customer"] == "BUSY_CUSTOMER"
    assert decision["outcome"] in ("review", "decline")
    assert len(decision["contributions"]) == 5
    top = decision["contributions"][0]
    assert top["feature"] == "customer_id_nb_tx_1day_window" and top["value"] == 9.0
    assert decision["latency_ms"] > 0

    [published] = records_with(kafka_broker.bootstrap_servers, "decisions",
                               {body["transaction_id"]})
    assert published["value"]["outcome"] == decision["outcome"]
    assert published["value"]["rule_set_version"] == decision["rule_set_version"]
    inputs = published["value"]["inputs"]
    assert inputs["customer_id_nb_tx_1day_window"] == 9.0 and inputs["score"] == decision["score"]
    assert inputs["terminal_id_risk_7day_window"] == 1.0  # (t-14d, t-7d]: one fraud of one
    assert inputs["rtml_seen_events_customer"] == 8.0 and inputs["rtml_seen_labels_terminal"] == 1.0
    [produced] = records_with(kafka_broker.bootstrap_servers, "transactions",
                              {body["transaction_id"]})
    assert produced["value"]["amount"] == 1500.0

    def logged() -> Any:
        log = service.decision_log
        rows = log.read(limit=1000) if log is not None else []
        return [r for r in rows if r.decision.transaction_id == body["transaction_id"]]

    [row] = wait_for(logged, timeout_s=60)
    assert row.inputs["tx_amount"] == 1500.0
    assert str(row.decision.outcome) == decision["outcome"]

    # The backtest endpoint replays a candidate over that log.
    candidate = PRIMARY_RULES.replace('version: "1"', 'version: "2"').replace(
        "amount >= 1000", "amount >= 2000")
    report = client.post("/v1/admin/rules/backtest", content=candidate,
                         headers={"X-API-Key": ADMIN_KEY, "Content-Type": "application/yaml"})
    assert report.status_code == 200, report.text
    assert report.json()


def test_retry_returns_the_same_decision_and_produces_nothing_twice(
        make_service: ServiceFactory, kafka_broker: Any) -> None:
    _, client = make_service()
    body = transaction()

    first = client.post("/v1/decisions", json=body)
    second = client.post("/v1/decisions", json=body)

    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert second.headers.get("Idempotent-Replay") == "true"
    assert "Idempotent-Replay" not in first.headers
    ids = {body["transaction_id"]}
    assert len(records_with(kafka_broker.bootstrap_servers, "decisions", ids, settle_s=2)) == 1
    assert len(records_with(kafka_broker.bootstrap_servers, "transactions", ids,
                            settle_s=1)) == 1


@pytest.mark.parametrize(("change", "field"), [
    ({"customer_id": None}, "customer_id"),
    ({"amount": -1.0}, "amount"),
    ({"event_time": "2018-04-01T12:00:00"}, "event_time"),
    ({"colour": "red"}, "colour"),
])
def test_bad_input_is_a_precise_422(make_service: ServiceFactory, change: dict[str, Any],
                                    field: str) -> None:
    _, client = make_service()
    body = {k: v for k, v in {**transaction(), **change}.items() if v is not None}

    response = client.post("/v1/decisions", json=body)

    assert response.status_code == 422
    body = response.json()
    assert isinstance(body["detail"], str) and field in body["detail"]
    assert any(field in error["loc"] for error in body["errors"]), body


def test_redis_unreachable_answers_degraded_with_the_fallback(
        make_service: ServiceFactory) -> None:
    service, client = make_service(redis_url=f"redis://127.0.0.1:{free_port()}/0")

    response = client.post("/v1/decisions", json=transaction(amount=600.0))

    assert response.status_code == 200
    decision = response.json()
    assert decision["degraded"] is True
    assert decision["degraded_reason"] == "redis_unavailable"
    assert decision["score"] is None and decision["contributions"] == []
    assert decision["rule_set"] == "test-fallback"
    assert decision["rule_set_version"] == service.rules.current.fallback.version
    assert [f["reason_code"] for f in decision["fired_rules"]] == ["FALLBACK_LARGE_AMOUNT"]
    assert decision["outcome"] == "review"


def test_no_champion_answers_degraded(make_service: ServiceFactory) -> None:
    _, client = make_service(model_name=unique("no-such-model"))

    decision = client.post("/v1/decisions", json=transaction()).json()

    assert decision["degraded"] is True and decision["degraded_reason"] == "no_model"
    assert decision["outcome"] == "approve"


def test_canary_arm_is_recorded(make_service: ServiceFactory) -> None:
    service, client = make_service(canary_weights={"champion": 50, "challenger": 50})
    arms = {client.post("/v1/decisions", json=transaction()).json()["arm"] for _ in range(20)}
    assert arms == {"champion", "challenger"}
    assert set(service.engine.serving.current.shadows) == {"challenger"}


def test_rules_upload_validates_then_hot_reloads(make_service: ServiceFactory) -> None:
    _, client = make_service()
    admin = {"X-API-Key": ADMIN_KEY, "Content-Type": "application/yaml"}
    before = client.get("/v1/rules").json()

    assert client.put("/v1/admin/rules", content=PRIMARY_RULES).status_code == 401
    assert client.put("/v1/admin/rules", content=PRIMARY_RULES,
                      headers={"X-API-Key": "wrong-key-0123456789"}).status_code == 401
    invalid = client.put("/v1/admin/rules", content="name: x\nversion: 1\nrules:\n"
                         "  - {name: r, when: 'nope >', outcome: review, reason: R}\n",
                         headers=admin)
    assert invalid.status_code == 422
    assert invalid.json()["detail"]
    assert client.get("/v1/rules").json()["version"] == before["version"]

    new_rules = PRIMARY_RULES.replace('version: "1"', 'version: "2"')
    uploaded = client.put("/v1/admin/rules", content=new_rules, headers=admin)
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["version"].startswith("2+")
    decision = client.post("/v1/decisions", json=transaction()).json()
    assert decision["rule_set_version"] == uploaded.json()["version"]


def test_an_upload_reaches_every_service_sharing_the_store_and_survives_a_restart(
        make_service: ServiceFactory, redis_server: Any) -> None:
    """Two services on one store (in-process here; several processes in test_rules_sync):
    an upload on one is followed by the other, a service built afterwards starts with it,
    and a stored set that is not a valid rule set is refused without touching the rules."""
    first, first_client = make_service()
    second, second_client = make_service(rules_refresh_interval_s=0.5)
    admin = {"X-API-Key": ADMIN_KEY, "Content-Type": "application/yaml"}
    assert second_client.get("/v1/rules").json()["revision"] == 0

    uploaded = first_client.put("/v1/admin/rules", headers=admin,
                                content=PRIMARY_RULES.replace('version: "1"', 'version: "7"'))
    assert uploaded.status_code == 200, uploaded.text
    version, revision = uploaded.json()["version"], uploaded.json()["revision"]
    assert version.startswith("7+") and revision >= 1
    followed = wait_for(lambda: (r := second_client.get("/v1/rules").json())["revision"]
                        == revision and r, timeout_s=10, interval_s=0.05)
    assert followed["version"] == version and followed["source"] == "upload"
    assert followed["activated_at"] == uploaded.json()["activated_at"]
    decision = second_client.post("/v1/decisions", json=transaction()).json()
    assert decision["rule_set_version"] == version
    assert second_client.get("/healthz").json()["rule_set_revision"] == revision

    restarted, _ = make_service()  # a new process of the deployment: the stored set
    assert restarted.rules.current.primary.version == version
    assert restarted.rules.current.revision == revision

    store = first.rule_sync.store if first.rule_sync else None
    assert store is not None
    client = redis.Redis.from_url(redis_server.url)
    try:
        bad = client.incr(store.revision_key)
        client.hset(store.active_key, mapping={"revision": bad, "text": "rules: [oops"})
        client.publish(store.channel, bad)
        assert second.rule_sync is not None
        wait_for(lambda: second.rule_sync.refused_revision == bad, timeout_s=10,
                 interval_s=0.05)
        assert second_client.get("/v1/rules").json()["revision"] == revision
        assert second_client.post("/v1/decisions", json=transaction()).json()[
            "rule_set_version"] == version
        from_corrupt, corrupt_client = make_service()  # starts: the file's rules, not a crash
        assert from_corrupt.rules.current.revision == 0
        assert corrupt_client.get("/healthz").status_code == 200
    finally:
        client.close()


def test_an_upload_with_the_store_unreachable_activates_nothing(
        make_service: ServiceFactory) -> None:
    service, client = make_service(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    before = service.rules.current

    response = client.put("/v1/admin/rules", content=PRIMARY_RULES.replace(
        'version: "1"', 'version: "3"'), headers={"X-API-Key": ADMIN_KEY})

    assert response.status_code == 503, response.text
    assert "nothing was activated" in response.json()["detail"]
    assert service.rules.current is before


def test_admin_endpoints_are_disabled_without_a_key(make_service: ServiceFactory) -> None:
    service, _ = make_service()
    from rtml_decision.api import create_app

    with TestClient(create_app(service.engine, service.rules, None)) as bare:
        response = bare.put("/v1/admin/rules", content=FALLBACK_RULES,
                            headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code == 403


def test_every_decision_is_explained_exactly_where_flagged_or_everywhere_if_configured(
        make_service: ServiceFactory) -> None:
    _, client = make_service()
    approved = client.post("/v1/decisions", json=transaction()).json()
    flagged = client.post("/v1/decisions", json=transaction(amount=1500.0)).json()
    _, explain_all = make_service(contributions="all")
    explained = explain_all.post("/v1/decisions", json=transaction()).json()

    assert approved["outcome"] == "approve" and len(approved["contributions"]) == 5
    assert {c["method"] for c in approved["contributions"]} == {"path"}
    assert flagged["outcome"] == "review" and len(flagged["contributions"]) == 5
    assert {c["method"] for c in flagged["contributions"]} == {"treeshap"}
    assert explained["outcome"] == "approve" and len(explained["contributions"]) == 5
    assert {c["method"] for c in explained["contributions"]} == {"treeshap"}
    # Both attributions rank the same dominant feature first on this model.
    assert approved["contributions"][0]["feature"] == explained["contributions"][0]["feature"]


def test_a_concurrent_duplicate_waits_for_the_claim_holders_decision(
        make_service: ServiceFactory, redis_server: Any) -> None:
    import threading

    import redis

    from rtml_decision.request_store import PENDING, decision_key

    _, client = make_service(request_timeout_ms=3000)
    body = transaction()
    store = redis.Redis.from_url(redis_server.url)
    store.set(decision_key(body["transaction_id"]), PENDING, px=10_000)  # another request deciding
    holder = threading.Timer(0.2, lambda: store.set(decision_key(body["transaction_id"]),
                                                    b'{"outcome":"review"}', ex=60))
    holder.start()

    response = client.post("/v1/decisions", json=body)

    holder.join()
    store.close()
    assert response.status_code == 200
    assert response.content == b'{"outcome":"review"}'
    assert response.headers.get("Idempotent-Replay") == "true"


def test_a_claim_still_pending_after_the_budget_is_a_409(
        make_service: ServiceFactory, redis_server: Any) -> None:
    import redis

    from rtml_decision.request_store import PENDING, decision_key

    _, client = make_service(request_timeout_ms=50)
    body = transaction()
    with redis.Redis.from_url(redis_server.url) as store:
        store.set(decision_key(body["transaction_id"]), PENDING, px=10_000)

    response = client.post("/v1/decisions", json=body)

    assert response.status_code == 409
    assert body["transaction_id"] in response.json()["detail"]
    assert response.headers.get("Retry-After") == "1"


def test_a_body_that_is_not_json_content_is_a_415(make_service: ServiceFactory) -> None:
    _, client = make_service()
    response = client.post("/v1/decisions", content=orjson.dumps(transaction()),
                           headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


# -- hardening (issue #17): every bad request a precise 4xx, nothing echoed unbounded --------

JSON = {"Content-Type": "application/json"}


def raw_transaction(amount: str = "42.5", transaction_id: str | None = None,
                    event_time: str | None = None) -> bytes:
    """A transaction body as JSON text, for values ``json=`` cannot send (NaN, surrogates)."""
    tid = transaction_id if transaction_id is not None else f'"{unique("tx")}"'
    when = event_time if event_time is not None else f'"{datetime.now(UTC).isoformat()}"'
    return (f'{{"transaction_id": {tid}, "event_time": {when}, "customer_id": "c-1", '
            f'"amount": {amount}}}').encode()


@pytest.mark.parametrize(("body", "field"), [
    (raw_transaction(amount="NaN"), "amount"),
    (raw_transaction(amount="Infinity"), "amount"),
    (raw_transaction(amount="-Infinity"), "amount"),
    (raw_transaction(amount="1e309"), "amount"),
    (raw_transaction(transaction_id='"\\ud800"'), "body"),
    (b'{"transaction_id": "\xff\xfe", "amount": 1}', "body"),
])
def test_unrenderable_values_are_422s_and_the_connection_stays_usable(
        make_service: ServiceFactory, body: bytes, field: str) -> None:
    """NaN / Infinity / 1e309 / a lone surrogate / invalid UTF-8 were 500s (the 422 echoed
    a value JSON cannot carry) and reset the keep-alive connection."""
    _, client = make_service()

    response = client.post("/v1/decisions", content=body, headers=JSON)

    assert response.status_code == 422, response.text
    refusal = response.json()
    assert isinstance(refusal["detail"], str)
    assert any(field in error["loc"] for error in refusal["errors"]), refusal
    assert all("input" not in error for error in refusal["errors"])  # never echoed
    assert client.post("/v1/decisions", json=transaction()).status_code == 200


@pytest.mark.parametrize(("change", "field"), [
    ({"amount": True}, "amount"),
    ({"amount": "12.5"}, "amount"),
    ({"event_time": 1_700_000_000}, "event_time"),
])
def test_amount_and_event_time_are_strictly_typed(make_service: ServiceFactory,
                                                  change: dict[str, Any], field: str) -> None:
    _, client = make_service()
    response = client.post("/v1/decisions", json=transaction(**change))
    assert response.status_code == 422, response.text
    assert any(field in error["loc"] for error in response.json()["errors"])


def test_a_body_past_the_limit_is_a_413_declared_or_streamed(
        make_service: ServiceFactory) -> None:
    """A 10 MB padded transaction was read, parsed and decided."""
    _, client = make_service(max_request_bytes=4096)
    padded = transaction(transaction_id="tx-" + "x" * 100)
    huge = orjson.dumps(padded)[:-1] + b"," + b" " * 10_000_000 + b"}"

    declared = client.post("/v1/decisions", content=huge, headers=JSON)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it arrives
        yield huge[:3000]
        yield huge[3000:6000]
        yield huge[6000:]

    streamed = client.post("/v1/decisions", content=chunks(), headers=JSON)

    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert response.json()["detail"] == ("request body larger than 4,096 bytes (the limit, "
                                             "RTML_DECISION_MAX_REQUEST_BYTES)")
    assert client.post("/v1/decisions", json=transaction()).status_code == 200


def test_long_ids_and_keys_are_not_echoed_back(make_service: ServiceFactory) -> None:
    _, client = make_service()
    long_id = transaction(transaction_id="i" * 12_000)
    long_key = {**transaction(), "k" * 12_000: 1}

    for body in (long_id, long_key):
        response = client.post("/v1/decisions", json=body)
        assert response.status_code == 422
        assert len(response.content) < 2_000, len(response.content)
        assert "i" * 200 not in response.text and "k" * 200 not in response.text


def test_a_retried_id_with_other_fields_is_a_409_not_the_first_decision(
        make_service: ServiceFactory) -> None:
    _, client = make_service()
    body = transaction()
    first = client.post("/v1/decisions", json=body)

    for change in ({"amount": 43.0}, {"customer_id": unique("c")}, {"terminal_id": None},
                   {"currency": "USD"}, {"event_time": "2018-04-01T12:00:00+00:00"}):
        changed = {k: v for k, v in {**body, **change}.items() if v is not None}
        conflict = client.post("/v1/decisions", json=changed)
        assert conflict.status_code == 409, (change, conflict.text)
        assert "different customer_id, terminal_id, amount" in conflict.json()["detail"]
        assert body["transaction_id"] in conflict.json()["detail"]

    same = client.post("/v1/decisions", json=body)
    assert first.status_code == same.status_code == 200
    assert same.content == first.content and same.headers["Idempotent-Replay"] == "true"


def test_event_times_far_from_the_clock_are_refused(make_service: ServiceFactory) -> None:
    """A 9999 event time froze features and pushed valid traffic to transactions.late."""
    _, client = make_service(max_future_skew_s=600)
    now = datetime.now(UTC)

    for future in ("9999-12-31T23:59:59Z", (now + timedelta(hours=1)).isoformat()):
        response = client.post("/v1/decisions", json=transaction(event_time=future))
        assert response.status_code == 422
        assert "RTML_DECISION_MAX_FUTURE_SKEW_S" in response.json()["detail"]
        assert response.json()["errors"][0]["loc"] == ["body", "event_time"]
    soon = transaction(event_time=(now + timedelta(minutes=5)).isoformat())
    assert client.post("/v1/decisions", json=soon).status_code == 200
    old = transaction(event_time="2018-04-01T12:00:00Z")  # replays: accepted by default
    assert client.post("/v1/decisions", json=old).status_code == 200

    _, bounded = make_service(max_event_age_s=86_400)
    refused = bounded.post("/v1/decisions", json=transaction(event_time="2018-04-01T12:00:00Z"))
    assert refused.status_code == 422
    assert "RTML_DECISION_MAX_EVENT_AGE_S" in refused.json()["detail"]


def test_admin_endpoints_check_the_key_before_the_query_and_the_body(
        make_service: ServiceFactory) -> None:
    _, client = make_service()
    garbage = b"\xff\x00 not yaml: [ secret-payload"

    for response in (
        client.put("/v1/admin/rules", content=garbage),
        client.post("/v1/admin/rules/backtest?limit=abc&since=nope", content=garbage),
        client.post("/v1/admin/rules/backtest?limit=abc", content=garbage,
                    headers={"X-API-Key": "wrong-key-0123456789"}),
    ):
        assert response.status_code == 401, response.text
        assert response.json()["detail"] in ("missing X-API-Key header", "wrong X-API-Key")

    admin = {"X-API-Key": ADMIN_KEY}
    malformed = client.post("/v1/admin/rules/backtest?limit=abc", content=PRIMARY_RULES,
                            headers=admin)
    assert malformed.status_code == 422
    assert isinstance(malformed.json()["detail"], str) and "limit" in malformed.json()["detail"]


@pytest.mark.parametrize(("text", "message"), [
    ("name: x\nversion: 1\nrules: " + "[" * 5000 + "]" * 5000 + "\n",
     "<upload>:3: invalid YAML: nested deeper than 32 levels"),
    (PRIMARY_RULES.replace('version: "1"', "version: " + "9" * 5000),
     "<upload>:3: invalid YAML: integer longer than 30 digits"),
    (PRIMARY_RULES + "name: again\n", "<upload>:9: invalid YAML: duplicate key 'name' "
                                      "(first at line 2)"),
    ("\xff".encode("latin-1").decode("latin-1"), None),
])
def test_hostile_rule_sets_are_precise_422s(make_service: ServiceFactory, text: str,
                                            message: str | None) -> None:
    _, client = make_service()
    admin = {"X-API-Key": ADMIN_KEY, "Content-Type": "application/yaml"}
    for path, call in (("/v1/admin/rules", client.put),
                       ("/v1/admin/rules/backtest", client.post)):
        response = call(path, content=text.encode("latin-1") if message is None else text,
                        headers=admin)
        assert response.status_code == 422, (path, response.text)
        detail = response.json()["detail"]
        assert detail == message if message else "UTF-8" in detail


def test_a_rule_set_past_the_size_limit_is_a_413(make_service: ServiceFactory) -> None:
    _, client = make_service(rules_max_bytes=2048)
    admin = {"X-API-Key": ADMIN_KEY, "Content-Type": "application/yaml"}
    big = PRIMARY_RULES + "# " + "x" * 4000 + "\n"

    response = client.put("/v1/admin/rules", content=big, headers=admin)

    assert response.status_code == 413
    assert response.json()["detail"] == ("request body larger than 2,048 bytes (the limit, "
                                         "RTML_DECISION_RULES_MAX_BYTES)")


def slow_rule_set(rules: int = 3000, tests: int = 8195) -> str:
    """~950 KB like the one that held the loop for 64 s: 3,000 rules, 8,195 embedded tests."""
    lines = ["name: slow", 'version: "1"', "rules:"]
    lines += [f'  - {{name: r{i}, when: "amount >= {i} and customer_id_nb_tx_1day_window > '
              f'{i % 7}", outcome: review, reason: R{i}}}' for i in range(rules)]
    lines += ["test_defaults: {amount: 1.0, customer_id_nb_tx_1day_window: 0}", "tests:"]
    lines += [f"  - {{name: t{i}, input: {{amount: 0.5}}, expect: {{outcome: approve}}}}"
              for i in range(tests)]
    return "\n".join(lines) + "\n"


def test_a_slow_validation_runs_off_the_loop_and_is_stopped_at_its_limit(
        make_service: ServiceFactory) -> None:
    import threading

    service, client = make_service(rules_validation_timeout_s=5)
    before = client.get("/v1/rules").json()["version"]
    admin = {"X-API-Key": ADMIN_KEY, "Content-Type": "application/yaml"}
    upload: dict[str, Any] = {}
    uploading = threading.Thread(target=lambda: upload.update(response=client.put(
        "/v1/admin/rules", content=slow_rule_set(), headers=admin)))
    uploading.start()
    wait_for(lambda: service.rule_worker.busy, timeout_s=30, interval_s=0.01)

    decision = client.post("/v1/decisions", json=transaction())

    still_validating = uploading.is_alive()
    uploading.join()
    assert decision.status_code == 200 and decision.json()["degraded"] is False
    assert still_validating  # the decision was answered while the upload was validated
    response = upload["response"]
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "<upload>: the validation took longer than 5 s (RTML_DECISION_RULES_VALIDATION_TIMEOUT_S) "
        "and was stopped; split or simplify the rule set or its embedded tests")
    assert client.get("/v1/rules").json()["version"] == before


def test_backtest_windows_without_decisions_and_inverted_windows(
        make_service: ServiceFactory) -> None:
    """Both were 500 'logged decisions lack column(s)'."""
    service, client = make_service(cassandra=True)
    wait_for(lambda: service.decision_log is not None, timeout_s=60)
    admin = {"X-API-Key": ADMIN_KEY, "Content-Type": "application/yaml"}
    path = "/v1/admin/rules/backtest"

    empty = client.post(path, params={"since": "2001-01-01T00:00:00Z",
                                      "until": "2001-01-02T00:00:00Z"},
                        content=PRIMARY_RULES, headers=admin)
    default = client.post(path, content=PRIMARY_RULES, headers=admin)
    inverted = client.post(path, params={"since": "2024-01-02T00:00:00Z",
                                         "until": "2024-01-01T00:00:00Z"},
                           content=PRIMARY_RULES, headers=admin)

    assert empty.status_code == 200, empty.text
    assert empty.json()["rows"] == 0 and empty.json()["changed"] == 0
    assert default.status_code == 200, default.text
    assert inverted.status_code == 422
    assert inverted.json()["detail"] == ("since (2024-01-02T00:00:00+00:00) must be before "
                                         "until (2024-01-01T00:00:00+00:00)")


def _schema_names(response: dict[str, Any]) -> set[str]:
    schema = response["content"]["application/json"]["schema"]
    return {ref["$ref"].rsplit("/", 1)[1] for ref in schema.get("anyOf", [schema])}


def test_openapi_documents_every_status_with_the_body_really_sent(
        make_service: ServiceFactory) -> None:
    _, client = make_service()
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    statuses = {(method.upper(), path): set(operation["responses"])
                for path, item in paths.items() for method, operation in item.items()}

    assert statuses == {
        ("GET", "/healthz"): {"200"},
        ("POST", "/v1/decisions"): {"200", "409", "413", "415", "422"},
        ("GET", "/v1/rules"): {"200"},
        ("PUT", "/v1/admin/rules"): {"200", "401", "403", "413", "422", "503"},
        ("POST", "/v1/admin/rules/backtest"): {"200", "401", "403", "413", "422", "503"},
    }
    decisions = paths["/v1/decisions"]["post"]["responses"]
    assert _schema_names(decisions["422"]) == {"ValidationFailure"}
    assert _schema_names(decisions["200"]) == {"DecisionOut"}
    backtest = paths["/v1/admin/rules/backtest"]["post"]
    assert _schema_names(backtest["responses"]["422"]) == {"ErrorBody", "ValidationFailure"}
    assert _schema_names(backtest["responses"]["200"]) == {"BacktestReport"}
    assert backtest["security"] == [{"APIKeyHeader": []}]
    assert "security" not in paths["/v1/decisions"]["post"]
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["ValidationFailure"]["properties"]["detail"]["type"] == "string"
    assert schemas["ErrorBody"]["properties"]["detail"]["type"] == "string"


def test_a_decision_log_that_cannot_be_read_is_a_503_not_a_500(
        make_service: ServiceFactory, cassandra_server: Any) -> None:
    """Cassandra stopped under a backtest: the read raises; the answer says retry later."""
    from rtml_decision.api import create_app
    from rtml_decision.decision_log.cassandra import CassandraDecisionLog

    service, _ = make_service()
    log = CassandraDecisionLog.from_settings(
        CassandraSettings(contact_points=cassandra_server.host, port=cassandra_server.port),
        unique("gone").replace("-", "_"))
    log.close()  # a closed session fails every read, as a lost cluster does

    app = create_app(service.engine, service.rules, SecretStr(ADMIN_KEY),
                     decision_log=lambda: log)
    with TestClient(app) as client:
        response = client.post("/v1/admin/rules/backtest", content=PRIMARY_RULES,
                               headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code == 503, response.text
    assert response.json()["detail"].startswith("the decision log could not be read (")


def test_a_real_server_keeps_the_connection_after_formerly_fatal_bodies(
        make_service: ServiceFactory) -> None:
    """Under uvicorn, NaN / 1e309 / a lone surrogate broke the 422 and reset the keep-alive
    connection: here they and a valid decision share one socket."""
    import socket
    import threading

    import uvicorn

    service, _ = make_service()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(service.app(), host="127.0.0.1", port=port,
                                           log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout_s=30, interval_s=0.05)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            stream = connection.makefile("rb")
            statuses = []
            for body in (raw_transaction(amount="NaN"), raw_transaction(amount="1e309"),
                         raw_transaction(transaction_id='"\\ud800"'),
                         orjson.dumps(transaction())):
                connection.sendall(b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Type: application/json\r\n"
                                   b"Content-Length: " + str(len(body)).encode()
                                   + b"\r\n\r\n" + body)
                status = int(stream.readline().split()[1])
                length = 0
                while (line := stream.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                stream.read(length)
                statuses.append(status)
        assert statuses == [422, 422, 422, 200]
    finally:
        server.should_exit = True
        thread.join(30)


def test_a_nested_lifespan_shares_the_first_ones_clients(make_service: ServiceFactory) -> None:
    """A harness may run the app's lifespan inside another (schemathesis' ASGI transport
    within a TestClient): one decision-log writer, and the clients live until the last
    lifespan ends (a second writer in the same group, or a producer closed under the
    outer lifespan, is what a nested start and stop used to leave)."""
    service, client = make_service(cassandra=True)
    writer = wait_for(lambda: service.writer, timeout_s=60)
    producer = service.publisher.producer
    with TestClient(service.app()) as inner:  # a second lifespan, inside the first
        assert inner.post("/v1/decisions", json=transaction()).status_code == 200
    assert service.writer is writer  # the inner lifespan started no writer of its own
    assert not writer.loop.stopping and not producer.closed  # nor stopped the outer's
    assert client.post("/v1/decisions", json=transaction()).status_code == 200


def test_rules_read_the_requests_declared_fields(make_service: ServiceFactory) -> None:
    """Issue #20: a rule reads any field the served set's schema declares (the handbook's
    ``currency`` here, not a standard input before), checked against its type at upload."""
    _, client = make_service(request_timeout_ms=3000)
    admin = {"X-API-Key": ADMIN_KEY, "Content-Type": "application/yaml"}
    mistyped = client.put("/v1/admin/rules", headers=admin, content=(
        "name: fields\nversion: 1\nrules:\n"
        "  - {name: odd_currency, when: 'currency > 3', outcome: review}\n"))
    assert mistyped.status_code == 422
    assert "rule 'odd_currency': cannot compare str > number (currency is str)" in \
        mistyped.json()["detail"]
    uploaded = client.put("/v1/admin/rules", headers=admin, content=(
        "name: fields\nversion: 1\nrules:\n"
        "  - {name: foreign, when: 'currency != \"EUR\" and amount > 10', outcome: review,"
        " reason: FOREIGN}\n"))
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["inputs"] == ["amount", "currency"]
    foreign = client.post("/v1/decisions", json=transaction(currency="USD")).json()
    assert not foreign["degraded"], foreign
    assert foreign["outcome"] == "review" and foreign["fired_rules"][0]["rule"] == "foreign"
    local = client.post("/v1/decisions", json=transaction()).json()  # EUR by default
    assert local["outcome"] == "approve" and local["fired_rules"] == []
