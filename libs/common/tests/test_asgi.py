"""The shared request-metrics middleware records route templates and statuses."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rtml_common.asgi import RequestMetrics


class _Route:
    path = "/v1/models/{name}"


def _call(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_records_the_route_template_method_and_status() -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = _Route()
        await send({"type": "http.response.start", "status": 404})
        await send({"type": "http.response.body", "body": b""})

    recorded: list[tuple[str, str, int, float]] = []
    app = RequestMetrics(inner, lambda *args: recorded.append(args))
    sent = _call(app, {"type": "http", "method": "GET", "path": "/v1/models/fraud"})
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    [(route, method, status, seconds)] = recorded
    assert (route, method, status) == ("/v1/models/{name}", "GET", 404) and seconds >= 0


def test_a_raising_app_counts_as_500_and_other_scopes_pass_through() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    recorded: list[tuple[str, str, int, float]] = []
    app = RequestMetrics(broken, lambda *args: recorded.append(args))
    with pytest.raises(RuntimeError):
        _call(app, {"type": "http", "method": "POST", "path": "/x"})
    assert recorded[0][:3] == ("unmatched", "POST", 500)
    with pytest.raises(RuntimeError):
        _call(app, {"type": "lifespan"})
    assert len(recorded) == 1
