"""The graduation policy (each refusal reason), and what the evaluator and API do with verdicts.

The registry is replaced by a recording stand-in here (pure decision logic);
the real registry is exercised in test_graduation.py.
"""

from __future__ import annotations

import dataclasses
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from rtml_shadow_auditor.api import create_app
from rtml_shadow_auditor.audit import CHAMPION_MISMATCH, LabelMetrics, VersionAudit
from rtml_shadow_auditor.config import Settings
from rtml_shadow_auditor.evaluator import Evaluator
from rtml_shadow_auditor.policy import judge
from rtml_shadow_auditor.promotion import PromotionResult, RegistryClient
from rtml_shadow_auditor.store import Store

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.usefixtures("clean_environment")
NOW = datetime(2018, 7, 1, tzinfo=UTC)
KEY = "approve-key-0123456789"


def good_audit(**changes: Any) -> VersionAudit:
    audit = VersionAudit(
        model_version="2", role="shadow", champion_version="1", scored=5000, paired=5000,
        missing=0, latency_p50_ms=2.0, latency_p99_ms=8.0, score_mean=0.1, psi=0.05,
        agreement=0.97, matured_labels=1500, frauds=60,
        metrics=LabelMetrics(auc=0.9, ap=0.62, cp_at_k=0.3, n=1500, n_fraud=60),
        champion_metrics=LabelMetrics(auc=0.88, ap=0.55, cp_at_k=0.25, n=1500, n_fraud=60),
        errors={CHAMPION_MISMATCH: 0})
    return dataclasses.replace(audit, **changes)


def test_a_shadow_that_passes_every_check_graduates() -> None:
    verdict = judge(good_audit(), Settings(), NOW)
    assert verdict.decision == "graduate" and verdict.failed == []
    assert "v2 graduates over champion v1" in verdict.summary


@pytest.mark.parametrize(("changes", "failed"), [
    ({"matured_labels": 999}, ["labels"]),
    ({"frauds": 19}, ["frauds"]),
    ({"metrics": LabelMetrics(auc=0.9, ap=0.555, cp_at_k=0.3, n=1500, n_fraud=60)}, ["ap"]),
    ({"metrics": LabelMetrics(auc=None, ap=None, cp_at_k=0.3, n=1500, n_fraud=0)}, ["ap"]),
    ({"latency_p99_ms": 20.5}, ["latency"]),
    ({"latency_p99_ms": None}, ["latency"]),
    ({"errors": {CHAMPION_MISMATCH: 1}}, ["errors"]),
    ({"matured_labels": 10, "frauds": 1, "latency_p99_ms": 50.0}, ["labels", "frauds", "latency"]),
])
def test_each_failed_check_holds_and_is_named(changes: dict[str, Any], failed: list[str]) -> None:
    verdict = judge(good_audit(**changes), Settings(), NOW)
    assert verdict.decision == "hold"
    assert verdict.failed == failed
    assert len(verdict.reasons) == len(failed)


def test_the_margin_is_configurable() -> None:
    assert judge(good_audit(), Settings(ap_margin=0.1), NOW).failed == ["ap"]
    assert judge(good_audit(), Settings(ap_margin=0.065), NOW).decision == "graduate"


class RecordingRegistry(RegistryClient):
    """Answers promotions from a script and records them (no HTTP)."""

    def __init__(self, answers: list[PromotionResult]) -> None:
        super().__init__("http://unused", SecretStr("k" * 16), 1.0)
        self.answers = answers
        self.calls: list[tuple[str, str, str, str | None]] = []

    def aliases(self, model: str) -> dict[str, str]:
        return {"champion": "1", "challenger": "2"}

    def promote(self, model: str, version: str, reason: str,
                actor: str | None = None) -> PromotionResult:
        self.calls.append((model, version, reason, actor))
        return self.answers.pop(0)


def evaluator_with(tmp_path: Path, registry: RegistryClient, **settings: Any) -> Evaluator:
    values: dict[str, Any] = {"state_dir": tmp_path / "state", "report_dir": tmp_path / "reports",
                              **settings}
    return Evaluator(Settings(**values), Store(tmp_path / "state" / "s.sqlite"), registry)


def graduate_once(evaluator: Evaluator) -> None:
    """What _evaluate does with a graduating verdict (figures made up, policy real)."""
    verdict = judge(good_audit(), evaluator.settings, NOW)
    evaluator._graduate(verdict, "<html>report</html>", NOW)


def test_auto_promote_applies_once_and_a_refusal_is_not_retried(tmp_path: Path) -> None:
    registry = RecordingRegistry([PromotionResult(False, "refused", "HTTP 422: gate: latency")])
    evaluator = evaluator_with(tmp_path, registry, auto_promote=True)
    graduate_once(evaluator)
    graduate_once(evaluator)  # the next evaluation says graduate again: no second call
    assert len(registry.calls) == 1
    model, version, reason, _ = registry.calls[0]
    (rec,) = evaluator.store.recommendations()
    assert (model, version, rec.status) == ("fraud-detector", "2", "refused")
    assert "gate: latency" in rec.detail
    assert rec.report_path is not None and reason.endswith(f"audit report: {rec.report_path}")
    assert Path(rec.report_path).read_text() == "<html>report</html>"


def test_a_recommendation_waits_for_an_approval_with_the_key(tmp_path: Path) -> None:
    registry = RecordingRegistry([PromotionResult(True, "applied", "champion -> v2")])
    evaluator = evaluator_with(tmp_path, registry, api_key=SecretStr(KEY))
    graduate_once(evaluator)
    assert registry.calls == []
    client = TestClient(create_app(evaluator, evaluator.store))
    (rec,) = client.get("/v1/verdicts").json()["recommendations"]
    assert rec["status"] == "pending"
    url = f"/v1/recommendations/{rec['id']}/approve"
    assert client.post(url, json={"actor": "alice"}).status_code == 401
    assert client.post(url, json={"actor": "alice"},
                       headers={"X-API-Key": "wrong-key-0123456789"}).status_code == 401
    assert client.post("/v1/recommendations/99/approve", json={"actor": "alice"},
                       headers={"X-API-Key": KEY}).status_code == 404
    approved = client.post(url, json={"actor": "alice"}, headers={"X-API-Key": KEY})
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "applied" and approved.json()["decided_by"] == "alice"
    assert registry.calls[0][3] == "alice"
    again = client.post(url, json={"actor": "bob"}, headers={"X-API-Key": KEY})
    assert again.status_code == 409


def test_approvals_are_off_without_a_key(tmp_path: Path) -> None:
    evaluator = evaluator_with(tmp_path, RecordingRegistry([]))
    graduate_once(evaluator)
    client = TestClient(create_app(evaluator, evaluator.store))
    response = client.post("/v1/recommendations/1/approve", json={"actor": "a"},
                           headers={"X-API-Key": KEY})
    assert response.status_code == 403
    assert "RTML_SHADOW_AUDITOR_API_KEY" in response.json()["detail"]


class AliasRegistry(RecordingRegistry):
    """A registry whose aliases the test sets."""

    def __init__(self, aliases: dict[str, str], answers: list[PromotionResult]) -> None:
        super().__init__(answers)
        self.current = aliases

    def aliases(self, model: str) -> dict[str, str]:
        return dict(self.current)


@pytest.mark.parametrize(("aliases", "why"), [
    ({"champion": "1", "challenger": "3"}, "v2 no longer holds a shadow alias"),
    ({"champion": "3", "challenger": "2"}, "the champion is now v3"),
    ({"challenger": "2"}, "the champion is now unset"),
])
def test_a_verdict_that_no_longer_describes_the_registry_is_not_acted_on(
        tmp_path: Path, aliases: dict[str, str], why: str) -> None:
    """A challenger replaced by a newer one, or a comparison with a champion since replaced,
    is history: promoting it would undo a newer decision."""
    registry = AliasRegistry(aliases, [PromotionResult(True, "applied", "champion -> v2")])
    evaluator = evaluator_with(tmp_path, registry, auto_promote=True)
    verdict = judge(good_audit(), evaluator.settings, NOW)
    assert verdict.graduate and (verdict.model_version, verdict.champion_version) == ("2", "1")
    stale = evaluator._stale(verdict.model_version, verdict.champion_version, registry.current)
    assert stale is not None and why in stale
    assert evaluator._stale("2", "1", None) == "the registry's aliases could not be read"
    assert evaluator._stale("2", "1", {"champion": "1", "shadow-b": "2"}) is None


def test_approving_an_out_of_date_recommendation_is_a_409(tmp_path: Path) -> None:
    registry = AliasRegistry({"champion": "1", "challenger": "2"},
                             [PromotionResult(True, "applied", "champion -> v2")])
    evaluator = evaluator_with(tmp_path, registry, api_key=SecretStr(KEY))
    graduate_once(evaluator)
    registry.current = {"champion": "1", "challenger": "3"}  # a newer challenger replaced v2
    client = TestClient(create_app(evaluator, evaluator.store))
    (rec,) = client.get("/v1/verdicts").json()["recommendations"]
    answer = client.post(f"/v1/recommendations/{rec['id']}/approve", json={"actor": "alice"},
                         headers={"X-API-Key": KEY})
    assert answer.status_code == 409 and "no longer holds a shadow alias" in answer.text
    assert registry.calls == []

# -- the API's contract under hostile requests (issue #17, findings 6 and 8) ------------
# Out-of-range ids, malformed bodies before and after the key, and the OpenAPI
# document listing every status an endpoint answers with the body it really sends.

AUTH = {"X-API-Key": KEY}


@pytest.fixture
def pending(tmp_path: Path) -> Evaluator:
    registry = RecordingRegistry([PromotionResult(True, "applied", "champion -> v2")])
    made = evaluator_with(tmp_path, registry, api_key=SecretStr(KEY))
    graduate_once(made)
    return made


@pytest.fixture
def client(pending: Evaluator) -> TestClient:
    return TestClient(create_app(pending, pending.store), raise_server_exceptions=False)


@pytest.mark.parametrize("rec_id", ["99999999999999999999999", str(2**63), str(2**63 - 1),
                                    "0", "-1"])
def test_an_id_no_recommendation_can_have_is_a_404(client: TestClient, rec_id: str) -> None:
    """A 23-digit id overflowed SQLite's integer: 500 OverflowError."""
    answer = client.post(f"/v1/recommendations/{rec_id}/approve", json={"actor": "alice"},
                         headers=AUTH)
    assert answer.status_code == 404, answer.text
    assert answer.json() == {"detail": f"no recommendation {int(rec_id)}"}


@pytest.mark.parametrize("body", [b"{not json", b'{"actor": 5}', b'{"actor": "a", "x": 1}',
                                  b"\xff\xfe\x00garbage", b"[" * 5000 + b"]" * 5000])
@pytest.mark.parametrize(("headers", "status"), [({}, 401),
                                                 ({"X-API-Key": "wrong-key-0123456789"}, 401)])
def test_the_key_is_checked_before_the_body(client: TestClient, body: bytes,
                                            headers: dict[str, str], status: int) -> None:
    """Without the key, nothing about the payload is said (it was a 422 describing it)."""
    answer = client.post("/v1/recommendations/1/approve", content=body,
                         headers={"content-type": "application/json", **headers})
    assert answer.status_code == status
    assert answer.json() == {"detail": "missing X-API-Key header" if not headers
                             else "wrong X-API-Key"}
    assert answer.headers["www-authenticate"] == "X-API-Key"


def test_without_a_configured_key_approvals_are_off_whatever_the_body(tmp_path: Path) -> None:
    evaluator = evaluator_with(tmp_path, RecordingRegistry([]))
    client = TestClient(create_app(evaluator, evaluator.store))
    answer = client.post("/v1/recommendations/1/approve", content=b"{bad",
                         headers={"content-type": "application/json", **AUTH})
    assert answer.status_code == 403
    assert "RTML_SHADOW_AUDITOR_API_KEY" in answer.json()["detail"]


@pytest.mark.parametrize(("body", "detail"), [
    (b"{not json", "body.1: JSON decode error: Expecting property name enclosed in double "
                   "quotes"),
    (b'{"actor": 5}', "body.actor: Input should be a valid string"),
    (b'{"actor": "  "}', "body.actor: String should have at least 1 character"),
    (b'{"actor": "a", "x": 1}', "body.x: Extra inputs are not permitted"),
    (b'{"actor": "\xff"}', "body.11: body is not UTF-8 (byte 11): JSON must be UTF-8 encoded"),
    (b"[" * 5000 + b"]" * 5000, "body: body is nested too deeply to parse"),
])
def test_a_malformed_body_with_the_key_is_a_precise_422(client: TestClient, body: bytes,
                                                        detail: str) -> None:
    """``detail`` is a string as for every other refusal; the input is not echoed."""
    answer = client.post("/v1/recommendations/1/approve", content=body,
                         headers={"content-type": "application/json", **AUTH})
    assert answer.status_code == 422, answer.text
    payload = answer.json()
    assert payload["detail"] == detail
    assert set(payload) == {"detail", "errors"}
    assert all("input" not in error for error in payload["errors"])


def test_report_is_a_documented_503_before_the_first_evaluation(client: TestClient) -> None:
    answer = client.get("/report")
    assert answer.status_code == 503
    assert answer.json()["detail"].startswith("no report yet")


def test_every_status_is_documented_with_its_body(client: TestClient) -> None:
    schema: dict[str, Any] = client.get("/openapi.json").json()
    approve = schema["paths"]["/v1/recommendations/{rec_id}/approve"]["post"]
    assert set(approve["responses"]) == {"200", "401", "403", "404", "409", "422"}
    assert approve["security"] == [{"APIKeyHeader": []}]
    refs = {code: response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            for code, response in approve["responses"].items()}
    assert refs == {"200": "RecommendationOut", "401": "ErrorBody", "403": "ErrorBody",
                    "404": "ErrorBody", "409": "ErrorBody", "422": "ValidationFailure"}
    failure = schema["components"]["schemas"]["ValidationFailure"]
    assert failure["properties"]["detail"]["type"] == "string"
    report = schema["paths"]["/report"]["get"]["responses"]
    assert set(report) == {"200", "503"} and "text/html" in report["200"]["content"]
