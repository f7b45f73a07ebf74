"""The HTTP API: ``POST /v1/decisions`` for everyone, rule management behind an API key.

:func:`create_app` takes its collaborators (the engine, the active rules, a
provider of the decision log for backtests, which opens after start-up)
instead of building them, so tests pass real ones pointing at the fixture
servers and ``__main__`` the configured ones.

Status codes (each documented in OpenAPI with the body really sent):
200; 409 a concurrent or conflicting request with the same
``transaction_id``; 413 a body past its limit (refused while it is read);
415 a decision body that is not JSON; 422 a malformed transaction or query
(:class:`~rtml_common.http_api.ValidationFailure`: ``detail`` a string,
``errors`` per field, never the input echoed), an implausible
``event_time``, or an invalid rule set (the validator's precise message);
401 missing or wrong ``X-API-Key``, checked before the body or the query is
read; 403 admin endpoints disabled (no key configured); 503 backtest
without a decision log, or an upload while the shared rule store (Redis) is
unreachable (nothing is activated: activating in one process only is how
workers used to disagree).

``POST /v1/decisions`` is answered by :class:`~rtml_decision.fast_path.DecisionFastPath`
before FastAPI's request machinery (a coroutine on the event loop: the work
is a fraction of a millisecond of CPU, less than a thread-pool hop costs);
the FastAPI route stays for OpenAPI. Rule validation and backtests run in a
worker process with a time limit (:mod:`rtml_decision.rule_worker`), never
on the loop. FastAPI's own per-request telemetry is trimmed (see
:data:`FASTAPI_TELEMETRY`).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from opentelemetry import trace
from pydantic import SecretStr

from rtml_common.asgi import RequestMetrics, TraceContext
from rtml_common.events import Transaction
from rtml_common.http_api import (
    ErrorBody,
    ValidationFailure,
    install_validation_handler,
    key_first_routes,
    key_guard,
)
from rtml_common.schema import EventSchema
from rtml_common.service_config import API_KEY_HEADER
from rtml_decision import ISSUE, SERVICE_NAME
from rtml_decision.active_rules import ActiveRules, RuleSets
from rtml_decision.body_limit import BodyLimit, BodyTooLarge
from rtml_decision.decision_log.base import DecisionLog
from rtml_decision.engine import DecisionEngine
from rtml_decision.fast_path import REPLAY_HEADER, DecisionFastPath
from rtml_decision.limits import Limits
from rtml_decision.metrics import DecisionMetrics
from rtml_decision.request_model import check_servable, request_body
from rtml_decision.request_store import REDIS_FAILURES
from rtml_decision.rule_store import RuleStore
from rtml_decision.rule_worker import RuleWorker
from rtml_decision.rules import RuleSetError
from rtml_decision.schemas import (
    RULES_YAML_EXAMPLE,
    BacktestReport,
    DecisionOut,
    Health,
    RuleSetOut,
)

#: A ``decide`` span per decision, child of the caller's span (``traceparent``,
#: via :class:`TraceContext` or FastAPI's server span when on); the records it
#: publishes carry its context (:mod:`rtml_common.tracing`).
_tracer = trace.get_tracer("rtml.decision")
logger = logging.getLogger(__name__)

#: FastAPI (0.160+) traces and measures every request by itself. The service
#: counts and times requests already (``RequestMetrics``, ``DecisionMetrics``);
#: FastAPI's metrics and its spans around dependency resolution, the endpoint
#: and serialisation roughly doubled the CPU of a decision. Its server span is
#: off too: ``TraceContext`` continues the caller's trace and a ``decide``
#: span per decision carries it (also on the fast path).
FASTAPI_TELEMETRY: dict[str, bool] = {"metrics": False, "operation_spans": False, "tracing": False}

RULES_SETTING = "RTML_DECISION_RULES_MAX_BYTES"
_TOO_LARGE = {"model": ErrorBody, "description": "The body is longer than its limit "
              "(RTML_DECISION_MAX_REQUEST_BYTES for decisions, RTML_DECISION_RULES_MAX_BYTES "
              "for rule sets); refused while it is read."}
_ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong X-API-Key header (checked "
          "before the body and the query are read)."},
    403: {"model": ErrorBody, "description": "Admin endpoints disabled: no key configured."},
    413: _TOO_LARGE,
    422: {"model": ErrorBody | ValidationFailure, "description": (
        "The rule set is invalid (`ErrorBody`: the validator's message with file line and "
        "rule, or its validation ran past RTML_DECISION_RULES_VALIDATION_TIMEOUT_S), or the "
        "query is malformed (`ValidationFailure`).")},
}
_YAML_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/yaml": {"schema": {"type": "string"}, "example": RULES_YAML_EXAMPLE}}}}
#: Longest refusal text sent back (a rule file's names and expressions are the client's).
MAX_DETAIL_CHARS = 4000
#: Longest backtest window: the log is read one day partition at a time.
MAX_BACKTEST_DAYS = 366
ADMIN_DISABLED = "admin endpoints are disabled: RTML_DECISION_ADMIN_API_KEY is not set"


def _rules_out(state: RuleSets) -> RuleSetOut:
    return RuleSetOut(name=state.primary.name, version=state.primary.version,
                      revision=state.revision, inputs=sorted(state.primary.inputs),
                      source=state.source, activated_at=state.activated_at,
                      fallback_name=state.fallback.name,
                      fallback_version=state.fallback.version)


async def _yaml_text(request: Request) -> str:
    raw = await request.body()
    try:
        return raw.decode()
    except UnicodeDecodeError as error:
        raise HTTPException(422, f"the rule set must be UTF-8 text (byte {error.start} is "
                                 "not)") from None


def backtest_window(since: datetime | None, until: datetime | None
                    ) -> tuple[datetime, datetime]:
    """The window [since, until) in UTC (naive times are UTC); 422 when it is empty or too long.

    Defaults: until now, since 30 days before until (the log's default lookback).
    """
    try:
        end = _utc(until) if until is not None else datetime.now(UTC)
        start = _utc(since) if since is not None else end - timedelta(days=30)
    except OverflowError:
        raise HTTPException(422, "since/until out of range") from None
    if start >= end:
        raise HTTPException(422, f"since ({start.isoformat()}) must be before until "
                                 f"({end.isoformat()})")
    if end - start > timedelta(days=MAX_BACKTEST_DAYS):
        raise HTTPException(422, f"the window from since to until is longer than "
                                 f"{MAX_BACKTEST_DAYS} days (the log is read day by day)")
    return start, end


def _bounded(message: str) -> str:
    """A refusal's text as sent: at most :data:`MAX_DETAIL_CHARS`, always valid UTF-8."""
    if len(message) > MAX_DETAIL_CHARS:
        message = message[:MAX_DETAIL_CHARS - 1] + "…"
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_DECISION_RESPONSES: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": (
        "A concurrent request with the same transaction_id is still deciding "
        "(beyond this request's budget; header Retry-After: retry), or the "
        "transaction_id was decided for a request with other fields.")},
    413: _TOO_LARGE,
    415: {"model": ErrorBody, "description": "The body is not JSON."},
    422: {"model": ValidationFailure, "description": (
        "Malformed request (`detail` names each invalid field: unknown, missing, of the wrong "
        "type, out of its bounds or outside its declared categories; `errors` lists them; "
        "the input is never echoed), or event_time further ahead of the service clock than "
        "RTML_DECISION_MAX_FUTURE_SKEW_S (or behind it than RTML_DECISION_MAX_EVENT_AGE_S, "
        "when set).")}}


def add_decision_route(app: FastAPI, schema: EventSchema,
                       endpoint: Callable[[Any], Awaitable[Response]]) -> None:
    """Declare ``POST /v1/decisions`` on ``app`` with the body model of ``schema``.

    The model is generated when the app is built (:func:`request_body`), so the
    endpoint's signature is given to FastAPI here rather than written in code.
    """
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("transaction", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                           annotation=request_body(schema))],
        return_annotation=Response)
    app.post("/v1/decisions", tags=["decisions"], response_model=DecisionOut,
             responses=_DECISION_RESPONSES)(endpoint)


def create_app(engine: DecisionEngine, rules: ActiveRules, admin_api_key: SecretStr | None,
               decision_log: Callable[[], DecisionLog | None] = lambda: None,
               metrics: DecisionMetrics | None = None, limits: Limits | None = None,
               worker: RuleWorker | None = None,
               rule_store: RuleStore | None = None) -> FastAPI:
    """The decision API over ``engine``; admin endpoints check ``admin_api_key``.

    ``worker`` validates uploads and runs backtests (a default one with
    ``limits``' time limits when not given), against the inputs of the
    engine's feature set and its schema (``engine.rule_inputs``). The
    decision route's body is the request model generated from that schema
    (:mod:`rtml_decision.request_model`); a set the request path cannot
    compute yet is refused here (:class:`~rtml_decision.request_model.UnservableFeatureSet`).
    An upload is stored in ``rule_store`` (every worker and replica follows
    it) before this process activates it; without one it reaches this
    process only.
    """
    check_servable(engine.feature_set)
    limits = limits or Limits()
    worker = worker or RuleWorker(limits.rules_validation_timeout_s,
                                  limits.backtest_timeout_s, engine.rule_inputs)
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
    # every other route's body (rule sets: the largest) is bounded while it is read
    app.add_middleware(BodyLimit, limit=limits.rules_max_bytes, setting=RULES_SETTING)
    app.add_middleware(RequestMetrics, record=record)  # counts BodyLimit's 413s too
    # outermost: decision requests never reach the stack above (see fast_path)
    app.add_middleware(DecisionFastPath, engine=engine, record=record, limits=limits)
    app.add_middleware(TraceContext)  # the caller's traceparent, without a server span

    require_admin = key_guard(lambda _: admin_api_key, ADMIN_DISABLED,
                              "The admin key (RTML_DECISION_ADMIN_API_KEY).")
    key_first_routes(app, require_admin)  # the key before the query or the body
    install_validation_handler(app)
    admin = [Depends(require_admin)]

    @app.exception_handler(RuleSetError)
    def _invalid_rules(_: Request, exc: RuleSetError) -> JSONResponse:
        return JSONResponse({"detail": _bounded(str(exc))}, status_code=422)

    @app.exception_handler(BodyTooLarge)
    def _too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    @app.get("/healthz", tags=["health"])
    def healthz() -> Health:
        """Liveness, the models being served and the active rule set."""
        state = rules.current
        return Health(status="ok", models=engine.serving.current.describe(),
                      rule_set_version=state.primary.version,
                      rule_set_revision=state.revision,
                      admin_enabled=admin_api_key is not None)

    async def decide(transaction: Transaction) -> Response:
        """Decide one request: an event of the served feature set's schema (see the API
        description).

        Declared for OpenAPI: :class:`DecisionFastPath` answers every such request.
        """
        started = time.perf_counter()
        with _tracer.start_as_current_span("decide"):  # its context rides on the records
            answer = await engine.decide(transaction, started)
        headers = {REPLAY_HEADER: "true"} if answer.replayed else None
        return Response(answer.body, media_type="application/json", headers=headers)

    add_decision_route(app, engine.feature_set.schema, decide)

    @app.get("/v1/rules", tags=["rules"])
    def active_rules() -> RuleSetOut:
        """The active rule set (name, version, inputs) and the fallback's version."""
        return _rules_out(rules.current)

    @app.put("/v1/admin/rules", tags=["rules"], openapi_extra=_YAML_BODY, dependencies=admin,
             responses={**_ADMIN_ERRORS, 503: {"model": ErrorBody, "description": (
                 "The shared rule store (Redis) is unreachable: nothing was activated; "
                 "retry later.")}})
    async def upload_rules(request: Request) -> RuleSetOut:
        """Validate a rule set (YAML body, embedded tests included) and activate it everywhere.

        Validation runs in a worker process within RTML_DECISION_RULES_VALIDATION_TIMEOUT_S
        (decisions go on meanwhile). The set is stored in Redis under a new
        revision and announced: every worker process and replica validates it
        again and swaps to it within moments (``revision`` in ``GET
        /v1/rules``). The swap is atomic: requests in flight finish with the
        rule set they started with; later ones use the new one and record its
        version. Of two concurrent uploads, the later revision wins
        everywhere; the answer is the set active here afterwards.
        """
        text = await _yaml_text(request)
        rule_set = await worker.validate(text, source="<upload>")
        if rule_store is None:
            return _rules_out(rules.activate(rule_set, source="upload"))
        try:
            revision, activated_at = await run_in_threadpool(rule_store.activate, rule_set,
                                                             text, "upload")
        except REDIS_FAILURES as error:
            logger.warning("rules upload: the shared rule store is unavailable: %r", error)
            raise HTTPException(503, "the shared rule store (Redis) is unavailable: nothing "
                                     "was activated; retry later") from None
        return _rules_out(rules.activate(rule_set, source="upload", revision=revision,
                                         activated_at=activated_at, text=text))

    @app.post("/v1/admin/rules/backtest", tags=["rules"], openapi_extra=_YAML_BODY,
              dependencies=admin,
              responses={**_ADMIN_ERRORS, 503: {"model": ErrorBody, "description": (
                  "The decision log is not open yet, or could not be read: retry later.")}})
    async def backtest_rules(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=1_000_000,
                                    description="Newest logged decisions to replay.")] = 10_000,
        since: Annotated[datetime | None, Query(description="Only decisions of "
                                                "transactions at or after this time.")] = None,
        until: Annotated[datetime | None, Query(description="... and before this time "
                                                "(after `since`).")] = None,
    ) -> BacktestReport:
        """Replay a candidate rule set over logged decisions and compare with the active one.

        A window without decisions gives a report of zero rows. The candidate
        is validated and evaluated in a worker process (within
        RTML_DECISION_RULES_VALIDATION_TIMEOUT_S / RTML_DECISION_BACKTEST_TIMEOUT_S).
        Nothing is activated: upload with ``PUT /v1/admin/rules`` afterwards.
        """
        since, until = backtest_window(since, until)
        text = await _yaml_text(request)
        log = decision_log()
        if log is None:
            await worker.validate(text)  # an invalid candidate is a 422 all the same
            raise HTTPException(503, "the decision log is not available (yet)")
        try:
            frame = await run_in_threadpool(lambda: log.read_frame(limit=limit, since=since,
                                                                   until=until))
        except Exception as error:  # Cassandra down or timing out: retry later, not a 500
            logger.warning("backtest: cannot read the decision log: %r", error)
            raise HTTPException(503, "the decision log could not be read "
                                     f"({type(error).__name__}); retry later") from None
        report = await worker.backtest(text, rules.current.primary, frame)
        return BacktestReport.model_validate(report)

    return app
