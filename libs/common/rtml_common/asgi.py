"""ASGI middleware shared by the HTTP services (registry, decision).

Pure ASGI, no framework import: it wraps any ASGI app, so it sits in
``rtml_common`` without pulling FastAPI into services that have no HTTP API.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from rtml_common.tracing import TRACEPARENT, TRACESTATE, extract

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]
_TRACE_KEYS = (TRACEPARENT.encode(), TRACESTATE.encode())
#: Called once per HTTP request: (route template, method, status, seconds).
RecordRequest = Callable[[str, str, int, float], None]


class RequestMetrics:
    """Count and time every HTTP request by route *template* and status.

    The template (``/v1/models/{name}``), not the raw path, keeps metric
    label cardinality bounded. A request that raises counts as 500.
    """

    def __init__(self, app: ASGIApp, record: RecordRequest) -> None:
        self.app = app
        self.record = record

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.record(route, scope["method"], status, time.perf_counter() - start)


class TraceContext:
    """Continue the caller's trace: make the request's W3C ``traceparent`` the current context.

    FastAPI's own server span does this when its tracing is on; a service
    that turns that span off for latency (the decision API) keeps the
    caller's trace with this instead: no span, only the extracted context
    attached, so the spans the handler starts are the caller's children.
    A no-op when a span is already current or the request has no
    ``traceparent``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or trace.get_current_span().get_span_context().is_valid:
            await self.app(scope, receive, send)
            return
        found = [(name.decode(), value) for name, value in scope.get("headers", ())
                 if name in _TRACE_KEYS]
        parent = extract(found) if found else None
        if parent is None:
            await self.app(scope, receive, send)
            return
        token = otel_context.attach(parent)
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)
