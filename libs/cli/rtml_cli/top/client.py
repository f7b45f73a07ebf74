"""A small client of the Prometheus HTTP API: instant queries, nothing else.

Two kinds of failure are kept apart because the view treats them apart:
:class:`PrometheusUnreachable` (no answer at all: nothing to draw, say where
we looked) and :class:`QueryFailed` (Prometheus answered but refused one
query: that panel says so, the others are still drawn).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

#: Seconds to wait for Prometheus to answer one query (it answers local queries in ms).
DEFAULT_TIMEOUT_S = 5.0


class PrometheusUnreachable(Exception):
    """Prometheus did not answer (refused, timed out, not Prometheus)."""


class QueryFailed(Exception):
    """Prometheus answered a query with an error (bad PromQL, timeout on its side)."""


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector: its labels and value (NaN when Prometheus says so)."""

    labels: Mapping[str, str]
    value: float

    def label(self, name: str, default: str = "") -> str:
        return self.labels.get(name, default)

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value)


def parse_response(body: Any) -> list[Sample]:
    """The samples of an ``/api/v1/query`` answer (vector or scalar result).

    Raises QueryFailed for an error answer or one not shaped like Prometheus'.
    """
    if not isinstance(body, dict):
        raise QueryFailed(f"not a Prometheus answer: {str(body)[:200]}")
    if body.get("status") != "success":
        raise QueryFailed(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
    try:
        data = body["data"]
        kind = data["resultType"]
        result = data["result"]
        if kind == "vector":
            return [Sample(dict(item.get("metric", {})), float(item["value"][1]))
                    for item in result]
        if kind == "scalar":
            return [Sample({}, float(result[1]))]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise QueryFailed(f"unexpected answer shape ({exc!r}): {str(body)[:200]}") from exc
    raise QueryFailed(f"result type {kind!r}: top reads instant vectors only")


class PrometheusClient:
    """Instant queries against one Prometheus; use as a context manager (one connection)."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S,
                 transport: httpx.BaseTransport | None = None) -> None:
        """``transport``: httpx's, for tests that answer from recorded responses."""
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, transport=transport)

    def query(self, promql: str) -> list[Sample]:
        """Evaluate ``promql`` now."""
        try:
            response = self._http.get("/api/v1/query", params={"query": promql})
        except httpx.TimeoutException as exc:
            raise PrometheusUnreachable(
                f"Prometheus at {self.url} did not answer within "
                f"{self._http.timeout.read}s ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise PrometheusUnreachable(f"Prometheus at {self.url} is not reachable: {exc}"
                                        ) from exc
        try:
            body = response.json()
        except ValueError:
            # 4xx/5xx with a JSON body are query errors; anything else is not Prometheus.
            raise PrometheusUnreachable(
                f"{self.url} answered HTTP {response.status_code} without JSON: is it "
                "Prometheus?") from None
        return parse_response(body)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
