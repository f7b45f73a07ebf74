"""The HTTP side: waiting for the decision API, then one ``POST /v1/decisions`` per payment.

One ``httpx.AsyncClient`` with as many connections as requests may be in
flight, so the open loop is never throttled by the pool. A request's outcome
is summarised in an :class:`Answer` and never raises: errors are counted, and
the loop keeps its schedule.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from rtml_common.events import Outcome, Transaction
from rtml_common.serde import encode

DECISIONS_PATH = "/v1/decisions"
HEALTH_PATH = "/healthz"
_OUTCOMES = frozenset(outcome.value for outcome in Outcome)


def request_body(transaction: Transaction, extra: Mapping[str, str] | None = None) -> bytes:
    """The request body: the transaction's fields and, when given, the extra fields."""
    body = encode(transaction)
    if not extra:
        return body
    return json.dumps({**json.loads(body), **extra}).encode()


class ApiUnavailable(RuntimeError):
    """The decision API did not answer in the time allowed; the message says what to do."""


@dataclass(frozen=True)
class Answer:
    """What one request got: an HTTP status, or a transport error."""

    status: int | None
    latency_s: float
    outcome: str | None = None
    degraded: bool = False
    #: Transport or protocol error (``timeout``, ``connect``, ``bad_response``, ...).
    error: str | None = None
    #: The whole decision, kept for declines only: the summary shows one with its reasons
    #: and contributions (what an analyst looks at first), the rest need only be counted.
    decision: dict[str, Any] | None = None

    @property
    def accepted(self) -> bool:
        """A decision was returned: the payment exists for the platform, so it gets a label."""
        return self.status == 200 and self.outcome is not None


class DecisionClient:
    """Async client of the decision API."""

    def __init__(self, api_url: str, timeout_s: float, max_connections: int) -> None:
        self.api_url = api_url
        self._client = httpx.AsyncClient(
            base_url=api_url, timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
            headers={"Content-Type": "application/json"})

    async def aclose(self) -> None:
        await self._client.aclose()

    async def wait_ready(self, wait_s: float) -> None:
        """Return once ``GET /healthz`` answers 200; retry transport errors for ``wait_s``.

        Raises :class:`ApiUnavailable` naming the last error (connection refused
        while the API is still starting is the usual one), or at once when
        something else answers on that address.
        """
        deadline = time.monotonic() + wait_s
        pause = 0.2
        while True:
            try:
                response = await self._client.get(HEALTH_PATH)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.status_code == 200:
                    return
                raise ApiUnavailable(
                    f"GET {self.api_url}{HEALTH_PATH} answered {response.status_code}: is this "
                    "the decision API? (--api-url / RTML_TRAFFIC_API_URL)")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ApiUnavailable(
                    f"the decision API at {self.api_url} did not answer within {wait_s:g} s "
                    f"(last error: {last}); start it (`python -m rtml_decision`, or the "
                    "platform) or pass --api-url, and --connect-wait-s to wait longer")
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, 2.0)

    async def decide(self, transaction: Transaction,
                     extra: Mapping[str, str] | None = None) -> Answer:
        """POST one payment (with the served schema's ``extra`` fields); never raises (the
        loop must keep its schedule)."""
        body = request_body(transaction, extra)
        started = time.perf_counter()
        try:
            response = await self._client.post(DECISIONS_PATH, content=body)
        except httpx.TimeoutException:
            return Answer(None, time.perf_counter() - started, error="timeout")
        except httpx.ConnectError:
            return Answer(None, time.perf_counter() - started, error="connect")
        except httpx.HTTPError as exc:
            return Answer(None, time.perf_counter() - started, error=type(exc).__name__)
        latency = time.perf_counter() - started
        if response.status_code != 200:
            return Answer(response.status_code, latency)
        try:
            decision = response.json()
            outcome = decision["outcome"]
            degraded = bool(decision.get("degraded", False))
        except (ValueError, KeyError, TypeError, AttributeError):
            return Answer(200, latency, error="bad_response")
        if outcome not in _OUTCOMES:
            return Answer(200, latency, error="bad_response")
        return Answer(200, latency, outcome=outcome, degraded=degraded,
                      decision=decision if outcome == "decline" else None)
