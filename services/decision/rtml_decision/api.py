"""The HTTP API: ``POST /v1/decisions`` for everyone, rule management behind an API key.

:func:`create_app` takes its collaborators (the engine, the active rules, a
provider of the decision log for backtests, which opens after start-up)
instead of building them, so tests pass real ones pointing at the fixture
servers and ``__main__`` the configured ones.

Status codes: 200 a decision (also a degraded one: the body says so);
422 a malformed transaction (missing or unknown field, negative amount,
naive datetime) or an invalid rule set (the validator's precise message);
401 missing or wrong ``X-API-Key``; 403 admin endpoints disabled (no key
configured); 503 backtest without a decision log.

``POST /v1/decisions`` is a coroutine on the event loop (the work is a
fraction of a millisecond of CPU, less than a thread-pool hop costs), and
a valid request is answered by :class:`~rtml_decision.fast_path.DecisionFastPath`
before FastAPI's request machinery; the FastAPI route stays for OpenAPI and
for everything the fast path hands over (422s). FastAPI's own per-request
telemetry is trimmed (see :data:`FASTAPI_TELEMETRY`).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from opentelemetry import trace
from pydantic import SecretStr

from rtml_common.asgi import RequestMetrics, TraceContext
from rtml_common.events import Transaction
from rtml_common.service_config import API_KEY_HEADER, KeyRejected, verify_api_key
from rtml_decision import ISSUE, SERVICE_NAME
from rtml_decision.active_rules import ActiveRules, RuleSets
from rtml_decision.decision_log.base import DecisionLog
from rtml_decision.engine import DecisionEngine
from rtml_decision.fast_path import REPLAY_HEADER, DecisionFastPath, in_progress_detail
from rtml_decision.metrics import DecisionMetrics
from rtml_decision.request_store import DecisionInProgress
from rtml_decision.rules import RuleSetError, backtest, parse_rule_set
from rtml_decision.schemas import (
    RULES_YAML_EXAMPLE,
    TRANSACTION_EXAMPLES,
    DecisionOut,
    ErrorBody,
    Health,
    RuleSetOut,
)

#: A ``decide`` span per decision, child of the caller's span (``traceparent``,
#: via :class:`TraceContext` or FastAPI's server span when on); the records it
#: publishes carry its context (:mod:`rtml_common.tracing`).
_tracer = trace.get_tracer("rtml.decision")

#: FastAPI (0.160+) traces and measures every request by itself. The service
#: counts and times requests already (``RequestMetrics``, ``DecisionMetrics``);
#: FastAPI's metrics and its spans around dependency resolution, the endpoint
#: and serialisation roughly doubled the CPU of a decision. Its server span is
#: off too: ``TraceContext`` continues the caller's trace and a ``decide``
#: span per decision carries it (also on the fast path).
FASTAPI_TELEMETRY: dict[str, bool] = {"metrics": False, "operation_spans": False, "tracing": False}

_ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong X-API-Key header."},
    403: {"model": ErrorBody, "description": "Admin endpoints disabled: no key configured."},
    422: {"model": ErrorBody, "description": "The rule set is invalid (precise reason)."},
}
_YAML_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/yaml": {"schema": {"type": "string"}, "example": RULES_YAML_EXAMPLE}}}}

_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                           description="The admin key (RTML_DECISION_ADMIN_API_KEY).")

AdminKey = Annotated[str | None, Security(_key_header)]


def check_admin_key(expected: SecretStr | None, key: str | None) -> None:
    """403 when admin endpoints are disabled, 401 for a missing or wrong key."""
    try:
        verify_api_key(expected, key,
                       "admin endpoints are disabled: RTML_DECISION_ADMIN_API_KEY is not set")
    except KeyRejected as rejected:
        headers = {"WWW-Authenticate": API_KEY_HEADER} if rejected.status == 401 else None
        raise HTTPException(rejected.status, rejected.detail, headers=headers) from None


def _rules_out(state: RuleSets) -> RuleSetOut:
    return RuleSetOut(name=state.primary.name, version=state.primary.version,
                      inputs=sorted(state.primary.inputs), source=state.source,
                      activated_at=state.activated_at, fallback_name=state.fallback.name,
                      fallback_version=state.fallback.version)


async def _yaml_text(request: Request) -> str:
    raw = await request.body()
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise HTTPException(422, "the rule set must be UTF-8 text") from None


def create_app(engine: DecisionEngine, rules: ActiveRules, admin_api_key: SecretStr | None,
               decision_log: Callable[[], DecisionLog | None] = lambda: None,
               metrics: DecisionMetrics | None = None) -> FastAPI:
    """The decision API over ``engine``; admin endpoints check ``admin_api_key``."""
    options: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        options["telemetry"] = FASTAPI_TELEMETRY
    app = FastAPI(
        **options,
        title=SERVICE_NAME, version="1",
        summary=f"Real-time fraud decisions: features, model, rules (issue #{ISSUE}).",
        description=(
            "`POST /v1/decisions` answers approve / review / decline with the score, the "
            "rules that fired and the top feature contributions. Idempotent by "
            "`transaction_id`: a retry returns the stored decision (header "
            f"`{REPLAY_HEADER}: true`) and produces nothing. When Redis or the model is "
            "unavailable, or the request budget runs out, the fallback rule set answers "
            "and the decision says `degraded`. Admin endpoints need the "
            f"`{API_KEY_HEADER}` header."),
    )
    record = (metrics or engine.metrics).http
    app.add_middleware(RequestMetrics, record=record)
    # outermost: valid decision requests never reach the stack above (see fast_path)
    app.add_middleware(DecisionFastPath, engine=engine, record=record)
    app.add_middleware(TraceContext)  # the caller's traceparent, without a server span

    def require_admin(key: str | None) -> None:
        check_admin_key(admin_api_key, key)

    @app.exception_handler(DecisionInProgress)
    def _in_progress(_: Request, exc: DecisionInProgress) -> JSONResponse:
        return JSONResponse({"detail": in_progress_detail(str(exc))}, status_code=409,
                            headers={"Retry-After": "1"})

    @app.exception_handler(RuleSetError)
    def _invalid_rules(_: Request, exc: RuleSetError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.get("/healthz", tags=["health"])
    def healthz() -> Health:
        """Liveness, the models being served and the active rule set."""
        return Health(status="ok", models=engine.serving.current.describe(),
                      rule_set_version=rules.current.primary.version,
                      admin_enabled=admin_api_key is not None)

    @app.post("/v1/decisions", tags=["decisions"], response_model=DecisionOut,
              responses={422: {"description": "Malformed transaction (FastAPI's "
                                              "validation errors name each field)."},
                         409: {"model": ErrorBody, "description": (
                             "A concurrent request with the same transaction_id is still "
                             "deciding (beyond this request's budget): retry.")}})
    async def decide(transaction: Annotated[Transaction, Body(
            openapi_examples=TRANSACTION_EXAMPLES)]) -> Response:
        """Decide one transaction (see the API description)."""
        started = time.perf_counter()
        with _tracer.start_as_current_span("decide"):  # its context rides on the records
            answer = await engine.decide(transaction, started)
        headers = {REPLAY_HEADER: "true"} if answer.replayed else None
        return Response(answer.body, media_type="application/json", headers=headers)

    @app.get("/v1/rules", tags=["rules"])
    def active_rules() -> RuleSetOut:
        """The active rule set (name, version, inputs) and the fallback's version."""
        return _rules_out(rules.current)

    @app.put("/v1/admin/rules", tags=["rules"], responses=_ADMIN_ERRORS,
             openapi_extra=_YAML_BODY)
    async def upload_rules(request: Request, key: AdminKey) -> RuleSetOut:
        """Validate a rule set (YAML body, embedded tests included) and activate it.

        The swap is atomic: requests in flight finish with the rule set they
        started with; later ones use the new one and record its version.
        """
        require_admin(key)
        rule_set = parse_rule_set(await _yaml_text(request), source="<upload>")
        return _rules_out(rules.activate(rule_set, source="upload"))

    @app.post("/v1/admin/rules/backtest", tags=["rules"], openapi_extra=_YAML_BODY,
              responses={**_ADMIN_ERRORS, 503: {"model": ErrorBody,
                                                "description": "No decision log configured."}})
    async def backtest_rules(
        request: Request, key: AdminKey,
        limit: Annotated[int, Query(ge=1, le=1_000_000,
                                    description="Newest logged decisions to replay.")] = 10_000,
        since: Annotated[datetime | None, Query(description="Only decisions of "
                                                "transactions at or after this time.")] = None,
        until: Annotated[datetime | None, Query(description="... and before this time.")] = None,
    ) -> dict[str, Any]:
        """Replay a candidate rule set over logged decisions and compare with the active one.

        Nothing is activated: upload with ``PUT /v1/admin/rules`` afterwards.
        """
        require_admin(key)
        candidate = parse_rule_set(await _yaml_text(request), source="<upload>")
        log = decision_log()
        if log is None:
            raise HTTPException(503, "the decision log is not available (yet)")
        frame = await run_in_threadpool(lambda: log.read_frame(limit=limit, since=since,
                                                               until=until))
        report = await run_in_threadpool(
            lambda: backtest(candidate, frame, current=rules.current.primary))
        result: dict[str, Any] = report.to_dict()
        return result

    return app
