"""ASGI front for ``POST /v1/decisions``: every decision request is answered here.

Why: a decision costs ~0.5 ms of CPU; FastAPI's per-request work around it
(routing, dependency solving, the exception and telemetry middleware stack)
cost ~0.4 ms more on the profile — the difference between one process
sustaining ~1,000 decisions/s or not (docs/benchmarks.md, "Decision API").

It answers every ``POST /v1/decisions`` itself, refusals included, so each
status is one this module chose and documented (the FastAPI route stays
declared for OpenAPI only):

* 415 a ``Content-Type`` other than JSON (none at all is read as JSON);
* 413 a body longer than ``max_request_bytes`` — refused from its
  ``Content-Length`` before reading, or at the first chunk past the limit;
* 422 a body that is not a valid request — an event of the served feature
  set's schema (:attr:`DecisionEngine.request_model`, for the handbook
  :class:`~rtml_common.events.Transaction`;
  :func:`rtml_common.http_api.validation_failure`: ``detail`` a string
  naming each field, ``errors`` per field, never the input echoed back —
  ``NaN`` or a megabyte id cannot break or bloat the answer), or whose
  ``event_time`` is implausibly far from the clock (:class:`~rtml_decision.limits.Limits`);
* 409 the id is being decided by a concurrent request past this one's
  budget, or was decided for a request with other fields;
* 200 the decision.

Other routes go to the FastAPI app unchanged. Requests answered here are
counted in the same ``http`` metric as :class:`rtml_common.asgi.RequestMetrics`
counts the others.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

import orjson
from opentelemetry import trace
from pydantic import ValidationError

from rtml_common.asgi import RecordRequest
from rtml_common.events import Event, Transaction
from rtml_common.http_api import validation_failure
from rtml_decision.body_limit import BodyTooLarge, ClientGone, read_body
from rtml_decision.engine import DecisionEngine
from rtml_decision.limits import Limits
from rtml_decision.request_store import DecisionInProgress, IdempotencyConflict

DECISIONS_PATH = "/v1/decisions"
REPLAY_HEADER = "Idempotent-Replay"
MAX_REQUEST_SETTING = "RTML_DECISION_MAX_REQUEST_BYTES"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

#: The same ``decide`` span per decision as the FastAPI route starts (see ``api``):
#: child of the caller's ``traceparent`` (attached by ``TraceContext``, outside
#: this middleware); the records the decision publishes carry its context.
_tracer = trace.get_tracer("rtml.decision")
_JSON = (b"content-type", b"application/json")
_REPLAYED = (REPLAY_HEADER.lower().encode(), b"true")
_RETRY = (b"retry-after", b"1")
#: Longest location part (a field name) repeated in a 422: the body's keys are the client's.
_MAX_LOC_CHARS = 64


def in_progress_detail(transaction_id: str) -> str:
    return (f"transaction {transaction_id} is being decided by a concurrent request; "
            "retry to get its decision")


def conflict_detail(transaction_id: str, fields: str = "customer_id, terminal_id, amount, "
                    "event_time or currency") -> str:
    return (f"transaction {transaction_id} was already decided (or is being decided) for a "
            f"request with a different {fields}; a transaction_id names one payment: resend "
            "the original request to get its decision, or use a new transaction_id")


UNSUPPORTED_DETAIL = "the body must be a JSON transaction (Content-Type: application/json)"


class DecisionFastPath:
    """Answers every ``POST /v1/decisions``; hands everything else to ``app``."""

    def __init__(self, app: ASGIApp, engine: DecisionEngine, record: RecordRequest,
                 limits: Limits) -> None:
        self.app = app
        self.engine = engine
        self.record = record
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != DECISIONS_PATH \
                or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            status, content, headers = await self._answer(scope, receive, started)
        except ClientGone:
            return
        except BaseException:
            self.record(DECISIONS_PATH, "POST", 500, time.perf_counter() - started)
            raise
        headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
        self.record(DECISIONS_PATH, "POST", status, time.perf_counter() - started)

    async def _answer(self, scope: Scope, receive: Any,
                      started: float) -> tuple[int, bytes, Headers]:
        limit = self.limits.max_request_bytes
        declared: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                if value.split(b";", 1)[0].strip().lower() != b"application/json":
                    return _error(415, UNSUPPORTED_DETAIL)
            elif name == b"content-length":
                declared = value
        try:
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge(limit, MAX_REQUEST_SETTING)
            body = await read_body(receive, limit, MAX_REQUEST_SETTING)
        except BodyTooLarge as error:
            return _error(413, str(error))
        transaction, refusal = decode_request(self.engine.request_model, body)
        if refusal is not None:
            return refusal
        transaction = cast(Transaction, transaction)  # or any schema's event (engine.generic)
        engine = self.engine
        if engine.generic:
            event_time = getattr(transaction, engine.feature_set.schema.event_time)
            transaction_id = getattr(transaction, engine.feature_set.schema.id_field)
        else:
            event_time, transaction_id = transaction.event_time, transaction.transaction_id
        problem = self.limits.event_time_error(event_time.timestamp(), time.time())
        if problem is not None:
            return _invalid([{"loc": ("event_time",), "msg": problem,
                              "type": "event_time_out_of_range"}])
        try:
            with _tracer.start_as_current_span("decide"):
                answer = await self.engine.decide(transaction, started)
        except DecisionInProgress:
            return _error(409, in_progress_detail(transaction_id), [_RETRY])
        except IdempotencyConflict:
            if engine.generic:
                return _error(409, conflict_detail(transaction_id, "value of another field"))
            return _error(409, conflict_detail(transaction_id))
        return 200, answer.body, [_JSON, *([_REPLAYED] if answer.replayed else [])]


def decode_request(model: type[Event], body: bytes
                   ) -> tuple[Event | None, tuple[int, bytes, Headers] | None]:
    """The request ``body`` as ``model``, or the 422 answering it (``detail`` naming each
    invalid field; the input never echoed)."""
    try:
        return model.model_validate_json(body), None
    except ValidationError as error:
        return None, _invalid(error.errors(include_url=False, include_input=False))


def _error(status: int, detail: str, extra: Headers | None = None
           ) -> tuple[int, bytes, Headers]:
    return status, orjson.dumps({"detail": detail}), [_JSON, *(extra or [])]


def _invalid(errors: list[Any]) -> tuple[int, bytes, Headers]:
    """422 in the shared shape, locations as FastAPI spells them (``body``, field)."""
    located = [{**e, "loc": ("body", *(_loc_part(p) for p in e.get("loc", ())))}
               for e in errors]
    failure = validation_failure(located)
    return 422, orjson.dumps(failure.model_dump(mode="json")), [_JSON]


def _loc_part(part: object) -> object:
    """A location part safe to send back: bounded, and valid UTF-8 (no lone surrogate)."""
    if isinstance(part, int):
        return part
    text = str(part).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= _MAX_LOC_CHARS else text[:_MAX_LOC_CHARS - 1] + "…"
