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


def _schema_names(response: dict[str, Any]) -> set[str]:
    schema = response["content"]["application/json"]["schema"]
    refs = [item["$ref"] for item in schema.get("anyOf", [schema])]
    return {ref.rsplit("/", 1)[1] for ref in refs}


def test_every_status_is_documented_with_the_body_really_sent(schema: dict[str, Any]) -> None:
    """422 bodies are a GateRefusal or a ValidationFailure (``detail`` a string, never
    FastAPI's list); reads need no key so document no 401/403; no undocumented 400."""
    paths = schema["paths"]
    put = paths["/v1/models/{name}/aliases/{alias}"]["put"]["responses"]
    assert set(put) == {"200", "401", "403", "404", "409", "422", "502", "503"}
    assert _schema_names(put["422"]) == {"GateRefusal", "ValidationFailure"}
    for path, item in paths.items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert "400" not in codes, (method, path)
            if "422" in codes and path.endswith("/validate"):
                assert _schema_names(operation["responses"]["422"]) == {"ValidationFailure"}
            if "security" not in operation:
                assert not {"401", "403"} & codes, (method, path)
    read = paths["/v1/models/{name}/versions/{version}"]["get"]["responses"]
    assert set(read) == {"200", "404", "422", "502"}
    failure = schema["components"]["schemas"]["ValidationFailure"]
    assert failure["properties"]["detail"]["type"] == "string"
    assert failure["required"] == ["detail"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
