"""Alias changes end to end: gate, MLflow alias, audit entry, ``model-events`` record.

Real MLflow and Kafka servers (fixtures); versions registered as the training
pipeline registers them (conftest). Every test uses its own model name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from rtml_common.events import ModelEvent, ModelEventKind
from rtml_model_registry.audit.base import DeliveryStatus

pytestmark = pytest.mark.integration

Events = Callable[..., list[ModelEvent]]


def put(app: Any, auth: dict[str, str], name: str, alias: str, version: str,
        reason: str = "better model") -> Any:
    return app.client.put(f"/v1/models/{name}/aliases/{alias}", headers=auth,
                          json={"version": version, "actor": "alice", "reason": reason})


def test_promotion_is_gated_set_audited_and_announced(
        make_app: Any, register: Any, good_model: Any, model_name: str, auth: dict[str, str],
        events: Events, feature_set: Any) -> None:
    name = model_name
    registered = register(name, good_model, metrics={"auc": 0.91, "ap": 0.62, "cp_at_100": 0.3})
    app = make_app()

    response = put(app, auth, name, "champion", "1", reason="first model")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["version"], body["previous_version"], body["action"]) == ("1", None, "set")
    assert body["event"]["status"] == "delivered"
    assert body["gate"]["passed"] is True
    statuses = {check["name"]: check["status"] for check in body["gate"]["checks"]}
    assert statuses == {"worker": "passed", "load": "passed", "feature_set": "passed",
                        "signature": "passed", "holdout": "passed", "scores": "passed",
                        "latency": "passed", "metrics": "skipped"}
    assert app.registry.aliases(name) == {"champion": "1"}

    assert app.client.get(f"/v1/models/{name}/aliases").json() == {
        "model": name, "aliases": {"champion": "1"}}
    lineage = app.client.get(f"/v1/models/{name}/versions/1").json()
    assert lineage["run_id"] == registered.run_id
    assert lineage["aliases"] == ["champion"]
    assert lineage["metrics"] == {"auc": 0.91, "ap": 0.62, "cp_at_100": 0.3}
    assert (lineage["feature_set"], lineage["feature_set_version"]) == (
        "baseline", feature_set.version)
    assert (lineage["flavor"], lineage["data_fingerprint"], lineage["code_version"]) == (
        "xgboost", "sha256:test", "test")
    assert lineage["digest"] == registered.digest
    assert [v["version"] for v in app.client.get(f"/v1/models/{name}/versions").json()
            ["versions"]] == ["1"]
    summary = app.client.get(f"/v1/models/{name}").json()
    assert (summary["aliases"], summary["latest_version"]) == ({"champion": "1"}, "1")
    assert name in {m["name"] for m in app.client.get("/v1/models").json()["models"]}

    audit = app.client.get(f"/v1/models/{name}/audit").json()
    assert audit["chain"]["valid"] is True
    [entry] = audit["entries"]
    assert (entry["action"], entry["from_version"], entry["to_version"]) == ("set", None, "1")
    assert (entry["actor"], entry["reason"]) == ("alice", "first model")
    assert entry["gate"]["passed"] is True
    assert entry["event"] == {"status": "delivered", "attempts": 1, "detail": ""}

    [event] = events(name)
    assert event.kind is ModelEventKind.ALIAS_SET
    assert (event.model_name, event.alias, event.version, event.previous_version) == (
        name, "champion", "1", None)
    assert (event.actor, event.reason) == ("alice", "first model")
    assert event.event_id == entry["entry_hash"]

    again = put(app, auth, name, "champion", "1")
    assert again.status_code == 409
    assert again.json() == {"detail": f"{name}@champion already points at v1"}

    removed = app.client.request("DELETE", f"/v1/models/{name}/aliases/champion", headers=auth,
                                params={"actor": "bob", "reason": "incident 42"})
    assert removed.status_code == 200, removed.text
    assert (removed.json()["version"], removed.json()["previous_version"]) == (None, "1")
    assert app.registry.aliases(name) == {}
    announced = events(name)
    assert [e.kind for e in announced] == [ModelEventKind.ALIAS_SET, ModelEventKind.ALIAS_REMOVED]
    assert (announced[1].version, announced[1].actor, announced[1].reason) == (
        "1", "bob", "incident 42")
    assert len(app.audit.entries(name)) == 2


def test_champion_history_metric_gate_and_rollback(
        make_app: Any, register: Any, good_model: Any, model_name: str, auth: dict[str, str],
        events: Events) -> None:
    name = model_name
    for ap in (0.80, 0.805, 0.70):  # v1, v2 (as good), v3 (worse by 0.105)
        register(name, good_model, metrics={"auc": 0.9, "ap": ap, "cp_at_100": 0.3})
    app = make_app()
    assert put(app, auth, name, "champion", "1").status_code == 200
    second = put(app, auth, name, "champion", "2")
    assert second.status_code == 200, second.text
    metric = {c["name"]: c for c in second.json()["gate"]["checks"]}["metrics"]
    assert metric["status"] == "passed"

    worse = put(app, auth, name, "champion", "3")
    assert worse.status_code == 422, worse.text
    assert worse.json()["failed_checks"] == ["metrics"]
    assert worse.json()["detail"] == (
        f"gate refused {name} v3 for champion: metrics: ap 0.7000 of v3 is 0.1050 below the "
        "champion v2's 0.8050 (at most 0.01 lower allowed)")
    assert app.registry.aliases(name) == {"champion": "2"}

    rolled = app.client.post(f"/v1/models/{name}/aliases/champion/rollback", headers=auth,
                             json={"actor": "carol", "reason": "v2 declines too much"})
    assert rolled.status_code == 200, rolled.text
    body = rolled.json()
    assert (body["action"], body["version"], body["previous_version"]) == ("rollback", "1", "2")
    assert {c["name"]: c["status"] for c in body["gate"]["checks"]}["metrics"] == "skipped"
    assert app.registry.aliases(name) == {"champion": "1"}

    entries = app.client.get(f"/v1/models/{name}/audit").json()["entries"]
    assert [(e["id"], e["action"], e["from_version"], e["to_version"]) for e in entries] == [
        (1, "set", None, "1"), (2, "set", "1", "2"), (3, "rollback", "2", "1")]
    announced = events(name)
    assert [(e.version, e.previous_version) for e in announced] == [
        ("1", None), ("2", "1"), ("1", "2")]
    assert announced[2].reason == "rollback: v2 declines too much"

    nothing = app.client.post(f"/v1/models/{name}/aliases/champion/rollback", headers=auth,
                              json={"actor": "carol", "reason": "again"})
    assert nothing.status_code == 409
    assert nothing.json()["detail"] == (f"cannot roll back {name}@champion: the alias was unset "
                                        "before v1: no earlier version to roll back to")


def test_validate_is_a_dry_run(make_app: Any, register: Any, good_model: Any, model_name: str,
                               auth: dict[str, str]) -> None:
    register(model_name, good_model)
    app = make_app()
    response = app.client.post(f"/v1/models/{model_name}/versions/1/validate", headers=auth,
                               params={"alias": "challenger"})
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["passed"], report["alias"]) == (True, "challenger")
    assert set(report["timings_ms"]) >= {"worker", "load", "holdout", "score", "latency", "total"}
    assert app.registry.aliases(model_name) == {}
    assert app.audit.entries(model_name) == []


def test_writes_need_the_api_key_and_reads_do_not(make_app: Any, register: Any,
                                                 good_model: Any, model_name: str) -> None:
    register(model_name, good_model)
    app = make_app()
    url = f"/v1/models/{model_name}/aliases/champion"
    body = {"version": "1", "actor": "alice", "reason": "x"}
    missing = app.client.put(url, json=body)
    assert (missing.status_code, missing.json()) == (401, {"detail": "missing X-API-Key header"})
    wrong = app.client.put(url, json=body, headers={"X-API-Key": "x" * 24})
    assert (wrong.status_code, wrong.json()) == (401, {"detail": "wrong X-API-Key"})
    for response in (
        app.client.post(f"{url}/rollback", json={"actor": "a", "reason": "b"}),
        app.client.delete(url, params={"actor": "a", "reason": "b"}),
        app.client.post(f"/v1/models/{model_name}/versions/1/validate"),
    ):
        assert response.status_code == 401
    # Refused before the body is even looked at.
    assert app.client.put(url, json={}).status_code == 401

    read_only = make_app(api_key=None)
    refused = read_only.client.put(url, json=body, headers={"X-API-Key": "x" * 24})
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "registry is read-only: RTML_MODEL_REGISTRY_API_KEY is not set"}
    assert read_only.client.get(f"/v1/models/{model_name}/versions/1").status_code == 200
    assert read_only.client.get("/healthz").json()["read_only"] is True
    assert app.registry.aliases(model_name) == {}


def test_unknown_models_versions_and_aliases_are_404(make_app: Any, register: Any,
                                                    good_model: Any, model_name: str,
                                                    auth: dict[str, str]) -> None:
    register(model_name, good_model)
    app = make_app()
    unknown = "no-such-model"
    for path in (f"/v1/models/{unknown}", f"/v1/models/{unknown}/versions",
                 f"/v1/models/{unknown}/aliases", f"/v1/models/{unknown}/versions/1"):
        response = app.client.get(path)
        assert (response.status_code, response.json()) == (
            404, {"detail": f"model '{unknown}' is not registered"}), path
    response = app.client.get(f"/v1/models/{model_name}/versions/9")
    assert response.json() == {"detail": f"model '{model_name}' has no version 9"}
    response = put(app, auth, model_name, "champion", "9")
    assert (response.status_code, response.json()) == (
        404, {"detail": f"model '{model_name}' has no version 9"})
    response = app.client.request("DELETE", f"/v1/models/{model_name}/aliases/shadow", headers=auth,
                                 json={"actor": "a", "reason": "b"})
    assert (response.status_code, response.json()) == (
        404, {"detail": f"{model_name}@shadow is not set"})
    response = app.client.post(f"/v1/models/{unknown}/versions/1/validate", headers=auth)
    assert response.status_code == 404


@pytest.mark.parametrize(("path", "body", "where"), [
    ("champion", {"version": "1", "actor": "  ", "reason": "x"}, "actor"),
    ("champion", {"version": "1", "actor": "alice"}, "reason"),
    ("champion", {"version": "v1", "actor": "alice", "reason": "x"}, "version"),
    ("champion", {"version": "1", "actor": "alice", "reason": "x", "force": True}, "force"),
])
def test_bad_bodies_are_422_naming_the_field(make_app: Any, model_name: str,
                                             auth: dict[str, str], path: str,
                                             body: dict[str, Any], where: str) -> None:
    app = make_app()
    response = app.client.put(f"/v1/models/{model_name}/aliases/{path}", headers=auth, json=body)
    assert response.status_code == 422
    payload = response.json()
    assert where in {str(part) for error in payload["errors"] for part in error["loc"]}
    assert isinstance(payload["detail"], str) and f"body.{where}: " in payload["detail"]
    assert all("input" not in error for error in payload["errors"])


@pytest.mark.parametrize("version", ["99999999999999999999999", str(2**31), "4" * 5000])
def test_a_version_no_registry_can_hold_is_a_404_at_once(
        make_app: Any, register: Any, good_model: Any, model_name: str, auth: dict[str, str],
        version: str) -> None:
    """A 23-digit version made MLflow fail; its client retried 5 s before a 502."""
    register(model_name, good_model)
    app = make_app()
    started = time.monotonic()
    for response in (app.client.get(f"/v1/models/{model_name}/versions/{version}"),
                     app.client.post(f"/v1/models/{model_name}/versions/{version}/validate",
                                     headers=auth),
                     put(app, auth, model_name, "champion", version)):
        assert response.status_code == 404, response.text
        assert response.json()["detail"].startswith(
            f"model '{model_name}' has no version {version} (versions are numbered 1 to")
    assert time.monotonic() - started < 5.0  # no MLflow retries behind the answer
    assert app.registry.aliases(model_name) == {}


@pytest.mark.parametrize("body", [b"{not json", b"{}", b'{"version": "\xff"}',
                                  b"\xff\xfe garbage", b"[" * 5000 + b"]" * 5000])
def test_a_malformed_body_without_the_key_is_a_401_first(make_app: Any, model_name: str,
                                                        body: bytes) -> None:
    """FastAPI parsed and validated the body before the key: a 422 describing it, or an
    undocumented 400 for a body that is not UTF-8."""
    app = make_app()
    for method, url in (("PUT", f"/v1/models/{model_name}/aliases/champion"),
                        ("POST", f"/v1/models/{model_name}/aliases/champion/rollback"),
                        ("DELETE", f"/v1/models/{model_name}/aliases/champion")):
        response = app.client.request(method, url, content=body,
                                      headers={"content-type": "application/json"})
        assert (response.status_code, response.json()) == (
            401, {"detail": "missing X-API-Key header"}), (method, url)


@pytest.mark.parametrize(("body", "detail"), [
    (b'{"version": "1", "actor": "\xff", "reason": "x"}',
     "body.27: body is not UTF-8 (byte 27): JSON must be UTF-8 encoded"),
    (b"[" * 5000 + b"]" * 5000, "body: body is nested too deeply to parse"),
    (b'{"version": 1e400', "body.17: JSON decode error: Expecting ',' delimiter"),
])
def test_an_unparseable_body_with_the_key_is_a_precise_422_not_a_400(
        make_app: Any, model_name: str, auth: dict[str, str], body: bytes, detail: str) -> None:
    app = make_app()
    response = app.client.put(f"/v1/models/{model_name}/aliases/champion", content=body,
                              headers={"content-type": "application/json", **auth})
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == detail


def test_alias_names_outside_the_pattern_are_422(make_app: Any, model_name: str,
                                                auth: dict[str, str]) -> None:
    app = make_app()
    response = put(app, auth, model_name, "latest", "1")
    assert response.status_code == 422
    assert response.json()["detail"].startswith(
        "alias 'latest' is not allowed; allowed: champion, challenger, shadow, shadow-<suffix>")
    blank = app.client.request("DELETE", f"/v1/models/{model_name}/aliases/shadow", headers=auth,
                              params={"actor": "alice"})
    assert blank.status_code == 422
    assert blank.json()["detail"].startswith(
        "actor and reason are required (JSON body or query parameters): reason:")
    path = app.client.get(f"/v1/models/{model_name}/versions/one")
    assert path.status_code == 422
    assert path.json()["detail"] == "path.version: String should match pattern '^[1-9][0-9]*$'"


def test_undelivered_event_is_503_audited_and_republished(
        make_app: Any, register: Any, good_model: Any, model_name: str, auth: dict[str, str],
        events: Events, kafka_broker_factory: Any) -> None:
    broker = kafka_broker_factory(create_topics=True)
    register(model_name, good_model)
    # 3 s, not 1: the first produce to a fresh broker on a loaded machine can take >1 s.
    app = make_app(bootstrap_servers=broker.bootstrap_servers, event_timeout_s=3.0)
    for alias in ("shadow", "challenger"):  # set before this service existed
        app.registry.set_alias(model_name, alias, "1")
    delivered = app.client.delete(f"/v1/models/{model_name}/aliases/challenger", headers=auth,
                                  params={"actor": "alice", "reason": "challenger done"})
    assert delivered.status_code == 200, delivered.text
    broker.stop()

    response = app.client.request("DELETE", f"/v1/models/{model_name}/aliases/shadow",
                                  headers=auth, json={"actor": "alice", "reason": "shadow done"})
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["detail"].startswith(
        f"{model_name}@shadow was removed (audit entry 2), but its model-events record was "
        "not delivered (")
    assert body["change"]["event"]["status"] == "failed"
    assert response.headers["retry-after"] == "30"
    assert app.registry.aliases(model_name) == {}  # the change stands
    [entry] = app.audit.pending(model_name)
    assert (entry.action, entry.from_version) == ("remove", "1")

    # Kafka is back: the app's own outbox (what the re-publisher runs) delivers it, with
    # a fresh producer (the failed one is in librdkafka's fatal idempotence state).
    broker.start()
    outbox = app.client.app.state.outbox
    for _ in range(5):
        if outbox.deliver_all().get(entry.id) is DeliveryStatus.DELIVERED:
            break
    [event] = events(model_name, broker.bootstrap_servers)  # the broker lost the first one
    assert (event.kind, event.version, event.event_id) == (
        ModelEventKind.ALIAS_REMOVED, "1", entry.entry_hash)
    audit = app.client.get(f"/v1/models/{model_name}/audit").json()
    assert audit["entries"][1]["event"]["status"] == "delivered"
    assert audit["entries"][1]["event"]["attempts"] >= 2
    assert app.audit.pending() == []


@pytest.mark.parametrize("name", ["%1E", "a%3Ab", "%C3%9C%F0%BE%9A%B5", "-lead", "a%20b"])
def test_a_name_mlflow_cannot_hold_is_a_422_not_a_502(make_app: Any, auth: dict[str, str],
                                                     name: str) -> None:
    """schemathesis found names MLflow refuses (blank to Python's strip, ':', ...) answered
    502 "MLflow failed"; they are refused before MLflow is asked."""
    app = make_app()
    for response in (app.client.get(f"/v1/models/{name}"),
                     app.client.get(f"/v1/models/{name}/versions"),
                     app.client.get(f"/v1/models/{name}/aliases"),
                     app.client.post(f"/v1/models/{name}/versions/1/validate", headers=auth)):
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith("path.name: String should match pattern")
