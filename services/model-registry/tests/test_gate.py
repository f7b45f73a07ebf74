"""The gate refuses bad versions through the API, saying which check failed and why.

Each refusal must leave everything as it was: the alias did not move,
nothing was audited and no ``model-events`` record was published.
Real MLflow and Kafka servers (fixtures); models are registered as the
training pipeline registers them (conftest).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rtml_common.events import ModelEvent

pytestmark = pytest.mark.integration

#: See conftest.SLOW_KNN_WINDOW: the slow model takes ~10 ms per row, 20x this budget.
SLOW_BUDGET_MS = 0.5


def refuse(app: Any, auth: dict[str, str], name: str, version: str,
           events: Callable[[str], list[ModelEvent]], alias: str = "champion") -> dict[str, Any]:
    """PUT the alias, expect a 422 refusal, check nothing changed; return the body."""
    response = app.client.put(f"/v1/models/{name}/aliases/{alias}", headers=auth,
                              json={"version": version, "actor": "ci", "reason": "test"})
    assert response.status_code == 422, response.text
    body: dict[str, Any] = response.json()
    assert body["gate"]["passed"] is False
    assert body["detail"].startswith(f"gate refused {name} v{version} for {alias}: ")
    assert alias not in app.registry.aliases(name)
    assert app.audit.entries(name) == []
    assert events(name) == []
    return body


def check(body: dict[str, Any], name: str) -> dict[str, Any]:
    by_name: dict[str, dict[str, Any]] = {c["name"]: c for c in body["gate"]["checks"]}
    return by_name[name]


def test_nan_producing_model_is_refused(make_app: Any, register: Any, nan_model: Any,
                                        model_name: str, auth: dict[str, str],
                                        events: Any) -> None:
    register(model_name, nan_model)
    body = refuse(make_app(), auth, model_name, "1", events)
    assert body["failed_checks"] == ["scores"]
    assert check(body, "scores")["detail"] == (
        "500 of 500 held-out scores are NaN (first at row 0)")
    assert check(body, "signature")["status"] == "passed"
    assert check(body, "load")["status"] == "passed"


def test_wrong_signature_model_is_refused(make_app: Any, register: Any,
                                          wrong_signature_model: Any, model_name: str,
                                          auth: dict[str, str], events: Any,
                                          feature_set: Any) -> None:
    register(model_name, wrong_signature_model)
    body = refuse(make_app(), auth, model_name, "1", events)
    assert body["failed_checks"] == ["signature"]
    detail = check(body, "signature")["detail"]
    assert f"differ from feature set baseline@{feature_set.version}" in detail
    assert (f"missing {feature_set.names[12:]}, unexpected ['tx_amount_zscore']") in detail
    assert check(body, "scores")["status"] == "skipped"
    assert check(body, "latency")["status"] == "skipped"


def test_too_slow_model_is_refused(make_app: Any, register: Any, slow_model: Any,
                                   holdout: Any, model_name: str, auth: dict[str, str],
                                   events: Any) -> None:
    register(model_name, slow_model, holdout=holdout.head(30))
    app = make_app(latency_budget_ms=SLOW_BUDGET_MS, latency_samples=20)
    body = refuse(app, auth, model_name, "1", events, alias="shadow-knn")
    assert body["failed_checks"] == ["latency"]
    latency = check(body, "latency")
    assert latency["detail"].startswith("p99 single-row latency ")
    assert f"exceeds the {SLOW_BUDGET_MS:g} ms budget" in latency["detail"]
    assert latency["data"]["p99_ms"] > SLOW_BUDGET_MS
    assert check(body, "scores")["status"] == "passed"


def test_version_without_a_holdout_is_refused(make_app: Any, register: Any, good_model: Any,
                                              model_name: str, auth: dict[str, str],
                                              events: Any) -> None:
    register(model_name, good_model, holdout=None)
    body = refuse(make_app(), auth, model_name, "1", events)
    assert body["failed_checks"] == ["holdout"]
    assert "validation/holdout.parquet could not be read" in check(body, "holdout")["detail"]
