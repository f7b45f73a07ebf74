"""The body limit at the ASGI level: refused from Content-Length, or while streaming."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from rtml_decision.body_limit import BodyLimit, read_body


def call(app: Any, chunks: list[bytes], headers: list[tuple[bytes, bytes]]
         ) -> tuple[int, dict[str, Any], int]:
    """Run ``app`` on one request; (status, JSON body, chunks the client was asked for)."""
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)]
    asked = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "PUT", "path": "/x", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], orjson.loads(sent[1]["body"]), asked


async def echo_length(scope: Any, receive: Any, send: Any) -> None:
    """An app that reads the whole body (as FastAPI's request.body() does)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    content = orjson.dumps({"length": len(body)})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": content})


LIMITED = BodyLimit(echo_length, limit=100, setting="RTML_X")
TOO_LARGE = {"detail": "request body larger than 100 bytes (the limit, RTML_X)"}


def test_a_declared_length_past_the_limit_is_refused_before_reading() -> None:
    status, body, asked = call(LIMITED, [b"x" * 500], [(b"content-length", b"500")])
    assert (status, body, asked) == (413, TOO_LARGE, 0)


def test_a_streamed_body_is_refused_at_the_first_chunk_past_the_limit() -> None:
    status, body, asked = call(LIMITED, [b"x" * 60, b"x" * 60, b"x" * 60, b"x" * 60], [])
    assert (status, body, asked) == (413, TOO_LARGE, 2)


def test_bodies_within_the_limit_pass_unchanged() -> None:
    assert call(LIMITED, [b"x" * 50, b"x" * 50], [(b"content-length", b"100")]) == (
        200, {"length": 100}, 2)


def test_read_body_stops_at_the_limit() -> None:
    chunks = iter([{"type": "http.request", "body": b"x" * 80, "more_body": True},
                   {"type": "http.request", "body": b"x" * 80, "more_body": True}])

    async def receive() -> dict[str, Any]:
        return next(chunks)

    async def scenario() -> str:
        try:
            await read_body(receive, 100, "RTML_X")
        except Exception as error:  # the type is asserted below
            return type(error).__name__
        return "read"

    assert asyncio.run(scenario()) == "BodyTooLarge"
