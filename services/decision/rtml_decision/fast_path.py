"""ASGI front for ``POST /v1/decisions``: a valid transaction skips FastAPI's request machinery.

Why: a decision costs ~0.5 ms of CPU; FastAPI's per-request work around it
(routing, dependency solving, the exception and telemetry middleware stack)
cost ~0.4 ms more on the profile — the difference between one process
sustaining ~1,000 decisions/s or not (docs/benchmarks.md, "Decision API").

What it handles itself: a ``POST /v1/decisions`` with a JSON body that
validates as a :class:`~rtml_common.events.Transaction`. Everything else —
other routes, a body that does not validate (so the 422 is FastAPI's own,
naming each field), another content type — goes to the FastAPI app
unchanged (the body it already read is replayed), and the endpoint stays
declared there for OpenAPI. Requests it answers are counted in the same
``http`` metric as :class:`rtml_common.asgi.RequestMetrics` counts the others.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from opentelemetry import trace
from pydantic import ValidationError

from rtml_common.asgi import RecordRequest
from rtml_common.events import Transaction
from rtml_decision.engine import DecisionEngine
from rtml_decision.request_store import DecisionInProgress

DECISIONS_PATH = "/v1/decisions"
REPLAY_HEADER = "Idempotent-Replay"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

#: The same ``decide`` span per decision as the FastAPI route starts (see ``api``):
#: child of the caller's ``traceparent`` (attached by ``TraceContext``, outside
#: this middleware); the records the decision publishes carry its context.
_tracer = trace.get_tracer("rtml.decision")
_JSON = (b"content-type", b"application/json")
_REPLAYED = (REPLAY_HEADER.lower().encode(), b"true")


def in_progress_detail(transaction_id: str) -> str:
    return (f"transaction {transaction_id} is being decided by a concurrent request; "
            "retry to get its decision")


class DecisionFastPath:
    """Answers valid ``POST /v1/decisions`` directly; hands everything else to ``app``."""

    def __init__(self, app: ASGIApp, engine: DecisionEngine, record: RecordRequest) -> None:
        self.app = app
        self.engine = engine
        self.record = record

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (scope["type"] != "http" or scope["path"] != DECISIONS_PATH
                or scope["method"] != "POST" or not _is_json(scope)):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        try:
            transaction = Transaction.model_validate_json(body)
        except ValidationError:
            await self.app(scope, _replay(body, receive), send)  # FastAPI's per-field 422
            return
        status = 200
        try:
            with _tracer.start_as_current_span("decide"):
                answer = await self.engine.decide(transaction, started)
            content, headers = answer.body, [_JSON, *([_REPLAYED] if answer.replayed else [])]
        except DecisionInProgress:
            status = 409
            content = orjson.dumps({"detail": in_progress_detail(transaction.transaction_id)})
            headers = [_JSON, (b"retry-after", b"1")]
        except BaseException:
            self.record(DECISIONS_PATH, "POST", 500, time.perf_counter() - started)
            raise
        headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
        self.record(DECISIONS_PATH, "POST", status, time.perf_counter() - started)


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"application/json")
    return False


def _replay(body: bytes, receive: Any) -> Callable[[], Awaitable[Message]]:
    """A ``receive`` that hands the already-read body to the next app, then the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        message: Message = await receive()
        return message

    return replay
