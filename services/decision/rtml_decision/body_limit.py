"""Request bodies read with a size bound, refused (413) as soon as they pass it.

Why here and not after the fact: a body is held in memory while it is read,
so a limit checked once the whole body arrived protects nothing (a 10 MB
padded transaction was read, parsed and decided). The declared
``Content-Length`` is refused before a byte is read; a chunked body is
counted as it arrives and refused at the first chunk past the limit. The
cost on the decision path is one header scan the fast path does anyway and
one addition per chunk.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class BodyTooLarge(Exception):
    """The request body is longer than its limit; ``str()`` is the client's message."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(f"request body larger than {limit:,} bytes (the limit, {setting})")
        self.limit = limit


class ClientGone(Exception):
    """The client disconnected before its whole body arrived."""


def declared_length(scope: Scope) -> int | None:
    """The ``Content-Length`` header, or None when absent or not a number."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_body(receive: Any, limit: int, setting: str) -> bytes:
    """The whole body; :class:`BodyTooLarge` at the first chunk past ``limit``."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        body += message.get("body", b"")
        if len(body) > limit:
            raise BodyTooLarge(limit, setting)
        if not message.get("more_body", False):
            return body


async def send_error(send: Any, status: int, detail: str,
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """A JSON ``{"detail": ...}`` response (the shape of every refusal of the API)."""
    content = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(content)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


class BodyLimit:
    """ASGI middleware: bodies of ``app``'s requests are at most ``limit`` bytes (413 beyond).

    The app reads the body through a counting ``receive``; past the limit it
    raises :class:`BodyTooLarge`, which the app should turn into a 413 (the
    decision API registers a handler); if it escapes, this middleware answers
    413 itself when no response has started.
    """

    def __init__(self, app: ASGIApp, limit: int, setting: str) -> None:
        self.app = app
        self.limit = limit
        self.setting = setting

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.limit:
            await send_error(send, 413, str(BodyTooLarge(self.limit, self.setting)))
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message: Message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit, self.setting)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as error:
            if started:
                raise
            await send_error(send, 413, str(error))
