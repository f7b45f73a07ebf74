"""The OpenAPI document: every endpoint, the key scheme, examples and error bodies."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from rtml_model_registry.api import create_app
from rtml_model_registry.audit.sqlite import SqliteAuditLog
from rtml_model_registry.config import Settings
from rtml_model_registry.gate import SubprocessGate
from rtml_models.registry.mlflow import MlflowRegistry

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.usefixtures("clean_environment")


class Unused:
    def publish(self, event: Any) -> None:
        raise AssertionError("nothing is published while reading the schema")

    def close(self) -> None:
        pass


@pytest.fixture
def schema(tmp_path: Path) -> dict[str, Any]:
    settings = Settings(audit_db=tmp_path / "audit.sqlite")
    registry = MlflowRegistry("http://127.0.0.1:9")  # never called
    gate = SubprocessGate.from_settings(settings, registry, registry.tracking_uri)
    app = create_app(settings, registry, SqliteAuditLog(settings.audit_db), Unused(), gate)
    with TestClient(app) as client:
        document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def test_every_endpoint_is_documented(schema: dict[str, Any]) -> None:
    operations = {(method.upper(), path) for path, item in schema["paths"].items()
                  for method in item}
    assert operations == {
        ("GET", "/healthz"), ("GET", "/v1/models"), ("GET", "/v1/models/{name}"),
        ("GET", "/v1/models/{name}/versions"), ("GET", "/v1/models/{name}/versions/{version}"),
        ("GET", "/v1/models/{name}/aliases"), ("GET", "/v1/models/{name}/audit"),
        ("PUT", "/v1/models/{name}/aliases/{alias}"),
        ("POST", "/v1/models/{name}/aliases/{alias}/rollback"),
        ("DELETE", "/v1/models/{name}/aliases/{alias}"),
        ("POST", "/v1/models/{name}/versions/{version}/validate"),
    }
    assert not any(method in ("patch",) for item in schema["paths"].values() for method in item)


def test_writes_declare_the_key_and_their_errors(schema: dict[str, Any]) -> None:
    assert schema["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "The registry's API key (RTML_MODEL_REGISTRY_API_KEY)."}
    put = schema["paths"]["/v1/models/{name}/aliases/{alias}"]["put"]
    assert put["security"] == [{"APIKeyHeader": []}]
    assert {"401", "403", "404", "409", "422", "503"} <= set(put["responses"])
    assert "security" not in schema["paths"]["/v1/models"]["get"]


def test_request_bodies_have_examples(schema: dict[str, Any]) -> None:
    body = schema["components"]["schemas"]["SetAliasRequest"]
    assert body["examples"][0]["version"] == "3"
    assert body["additionalProperties"] is False
    assert set(body["required"]) == {"version", "actor", "reason"}
