"""The decision request generated from the served feature set's schema (issue #20).

Unit level, no servers: the request model and its OpenAPI for the payments
example (examples/feature_repos/payments) and a schema of every field type,
the 422s the fast path sends for each kind of invalid request, the handbook's
route unchanged (its model is ``Transaction``, its hand-picked examples, the
same OpenAPI as the hand-written route), and the refusal to serve a set whose
features the request path cannot compute yet.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Annotated, Any

import orjson
import pytest
from fastapi import Body, FastAPI
from fastapi.responses import Response
from fastapi.testclient import TestClient

from rtml_common.events import Event, Transaction
from rtml_common.handbook import TRANSACTION_SCHEMA
from rtml_common.http_api import install_validation_handler
from rtml_common.schema import EventSchema, Field, FieldType
from rtml_decision.api import _DECISION_RESPONSES, add_decision_route
from rtml_decision.config import Settings
from rtml_decision.fast_path import decode_request
from rtml_decision.request_model import (
    check_servable,
    generated_examples,
    generic_path,
    request_examples,
    request_model,
)
from rtml_decision.schemas import TRANSACTION_EXAMPLES, DecisionOut
from rtml_features.baseline import BASELINE, get_feature_set
from rtml_features.definitions import FeatureSet
from rtml_features.repo import FEATURE_REPO_ENV

REPO = Path(__file__).resolve().parents[3] / "examples" / "feature_repos" / "payments"

EVERY_KIND = EventSchema(
    name="odd_event", topic="odd", id_field="odd_id", event_time="at", partition_key="owner",
    fields=[Field("odd_id", FieldType.STRING, max_length=6),
            Field("at", FieldType.TIMESTAMP),
            Field("owner", FieldType.STRING, min_length=4, max_length=4),
            Field("seen", FieldType.TIMESTAMP, required=False),
            Field("tries", FieldType.INTEGER, minimum=5, maximum=7),
            Field("debt", FieldType.NUMBER, maximum=-3),
            Field("big", FieldType.NUMBER, minimum=1000),
            Field("ratio", FieldType.NUMBER, minimum=0.1, maximum=0.2),
            Field("flag", FieldType.BOOLEAN),
            Field("level", FieldType.INTEGER, required=False, minimum=-2.5, maximum=-1.5),
            Field("tier", FieldType.STRING, categories=("gold", "silver")),
            Field("mode", FieldType.STRING, required=False, categories=("x", "yy"),
                  default="yy")])


def _payments() -> FeatureSet:
    name = "repo_decision_requests_payments"
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [str(REPO)]
        sys.modules[name] = package
    module = __import__(f"{name}.features", fromlist=["PAYMENTS"])
    feature_set: FeatureSet = module.PAYMENTS
    return feature_set


PAYMENTS = _payments()
PAYMENT = PAYMENTS.schema
VALID: dict[str, Any] = {
    "transaction_id": "p-1", "event_time": "2018-04-01T12:34:56+02:00", "customer_id": "c-1",
    "amount": 57.16, "device_id": "d-1", "merchant_category": "travel", "country": "FR",
    "channel": "web"}


def refusal(model: type[Event], body: dict[str, Any]) -> dict[str, Any]:
    """The fast path's 422 body for ``body``."""
    decoded, answer = decode_request(model, orjson.dumps(body))
    assert decoded is None and answer is not None
    status, content, _ = answer
    assert status == 422
    failure: dict[str, Any] = orjson.loads(content)
    return failure


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
    ({"amount": "12.5"}, "amount", "Input should be a valid number"),
    ({"amount": -1}, "amount", "greater than or equal to 0"),
    ({"amount": 2e9}, "amount", "less than or equal to 1000000000"),
    ({"channel": "fax"}, "channel", "Input should be 'pos', 'web' or 'app'"),
    ({"merchant_category": "Travel"}, "merchant_category", "'grocery', 'fuel'"),
    ({"country": "FRA"}, "country", "at most 2 characters"),
    ({"device_id": None}, "device_id", "Input should be a valid string"),
    ({"event_time": "2018-04-01T12:34:56"}, "event_time", "timezone"),
])
def test_payment_requests_are_strict_and_refusals_name_the_field(
        change: dict[str, Any], field: str, words: str) -> None:
    model = request_model(PAYMENT)
    assert model.__name__ == "Payment" and request_model(PAYMENT) is model
    accepted = model.model_validate_json(orjson.dumps(VALID))
    assert accepted.model_dump()["ip_address"] is None  # optional, no default
    failure = refusal(model, {**VALID, **change})
    assert [e["loc"] for e in failure["errors"]] == [["body", field]]
    assert field in failure["detail"] and words in failure["detail"], failure["detail"]
    assert "input" not in failure["errors"][0]  # never echoed back
    missing = refusal(model, {k: v for k, v in VALID.items() if k != "channel"})
    assert missing["errors"][0]["loc"] == ["body", "channel"]
    assert "Field required" in missing["detail"]


def test_generated_examples_are_valid_for_every_field_kind_and_bound() -> None:
    for schema in (PAYMENT, EVERY_KIND):
        model = request_model(schema)
        examples = generated_examples(schema)
        assert set(examples) == {"complete", "required_only"}
        complete = examples["complete"]["value"]
        assert list(complete) == schema.names
        required = examples["required_only"]["value"]
        assert set(required) == {f.name for f in schema.fields if f.required}
        for example in (complete, required):
            model.model_validate_json(orjson.dumps(example))  # valid JSON requests
    odd = generated_examples(EVERY_KIND)["complete"]["value"]
    assert odd["tries"] == 6 and odd["level"] == -2 and odd["debt"] == -3
    assert odd["big"] == 1000 and 0.1 <= odd["ratio"] <= 0.2 and odd["flag"] is False
    assert odd["tier"] == "gold" and odd["mode"] == "yy" and len(odd["owner"]) == 4
    assert len(odd["odd_id"]) <= 6
    payment = generated_examples(PAYMENT)["complete"]["value"]
    assert payment["channel"] == "pos" and payment["merchant_category"] == "grocery"
    assert payment["country"] == "CO" and payment["currency"] == "EUR"


def test_the_handbook_request_is_transaction_with_its_hand_picked_examples() -> None:
    assert request_model(TRANSACTION_SCHEMA) is Transaction
    assert request_examples(TRANSACTION_SCHEMA) is TRANSACTION_EXAMPLES
    for example in TRANSACTION_EXAMPLES.values():
        Transaction.model_validate(example["value"])
    for name in ("baseline", "extended"):
        assert request_model(get_feature_set(name).schema) is Transaction


def _echo_app(schema: EventSchema) -> FastAPI:
    app = FastAPI()
    install_validation_handler(app)

    async def decide(transaction: Event) -> Response:
        return Response(orjson.dumps({"model": type(transaction).__name__,
                                      **transaction.model_dump(mode="json")}),
                        media_type="application/json")

    add_decision_route(app, schema, decide)
    return app


def test_the_route_built_from_the_payment_schema_validates_and_documents_it() -> None:
    app = _echo_app(PAYMENT)
    with TestClient(app) as client:
        accepted = client.post("/v1/decisions", json={**VALID, "channel": "app"})
        assert accepted.status_code == 200
        assert accepted.json()["model"] == "Payment" and accepted.json()["channel"] == "app"
        refused = client.post("/v1/decisions", json={**VALID, "channel": "fax"})
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["loc"] == ["body", "channel"]
        assert "channel" in refused.json()["detail"]
    spec = app.openapi()
    body = spec["paths"]["/v1/decisions"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/Payment"}
    assert body["examples"] == generated_examples(PAYMENT)
    payment = spec["components"]["schemas"]["Payment"]
    assert payment["additionalProperties"] is False
    assert set(payment["required"]) == {f.name for f in PAYMENT.fields if f.required}
    assert payment["properties"]["channel"]["enum"] == ["pos", "web", "app"]
    assert payment["properties"]["amount"]["minimum"] == 0
    assert payment["properties"]["amount"]["maximum"] == 1e9


def test_the_handbook_route_documents_what_the_hand_written_route_did() -> None:
    generated = _echo_app(TRANSACTION_SCHEMA).openapi()
    written = FastAPI()

    @written.post("/v1/decisions", tags=["decisions"], response_model=DecisionOut,
                  responses=_DECISION_RESPONSES)
    async def decide(transaction: Annotated[Transaction, Body(
            openapi_examples=TRANSACTION_EXAMPLES)]) -> Response:
        raise AssertionError("not called")

    expected = written.openapi()
    assert generated["paths"] == expected["paths"]
    assert generated["components"]["schemas"]["Transaction"] == \
        expected["components"]["schemas"]["Transaction"]
    with TestClient(_echo_app(TRANSACTION_SCHEMA)) as client:
        sent = TRANSACTION_EXAMPLES["payment"]["value"]
        assert client.post("/v1/decisions", json=sent).json()["model"] == "Transaction"
        refused = client.post("/v1/decisions", json={**sent, "amount": -1})
        assert refused.status_code == 422 and "amount" in refused.json()["detail"]


def test_every_set_is_servable_classic_handbook_sets_on_their_own_path(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Classic sets over the handbook's schema keep the prefix-log path; the payments set
    and a classic set over another schema take the generic one (issue #20)."""
    for feature_set in (BASELINE, get_feature_set("extended")):
        check_servable(feature_set)
        assert not generic_path(feature_set)
    classic_payments = FeatureSet("classic_payments", BASELINE.features, schema=PAYMENT)
    for feature_set in (PAYMENTS, classic_payments):
        check_servable(feature_set)
        assert generic_path(feature_set)
    monkeypatch.setenv(FEATURE_REPO_ENV, str(REPO))
    assert Settings(feature_set="payments").feature_set == "payments"
