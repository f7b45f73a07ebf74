"""Put a registered version in shadow through the model-registry service's HTTP API.

The worker never moves aliases in MLflow itself: the registry service runs
its validation gate, writes the audit log and announces the change on
``model-events`` (so scorers start shadow-scoring the challenger). A gate
refusal (409 / 422) is final and comes back with the registry's reason; an
unreachable registry or a 5xx is retried a few times with back-off. A 503
means the alias *is* set and audited but its event is still being
re-published by the registry: that counts as done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from rtml_common.service_config import API_KEY_HEADER
from rtml_models.aliases import CHALLENGER

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AliasResult:
    """How an alias change ended: ``ok``; else ``refused`` (final) with the registry's reason."""

    ok: bool
    status: int | None
    detail: str
    refused: bool = False
    #: Short reason for a metric label: the gate's failed checks, else the HTTP status.
    reason: str = ""


def _failed_checks(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return ""
    checks = body.get("failed_checks") if isinstance(body, dict) else None
    return ",".join(str(c) for c in checks) if isinstance(checks, list) else ""


def _detail(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:500]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return detail if isinstance(detail, str) else str(detail)[:2000]


class RegistryClient:
    """The registry's alias endpoints, with the worker's key."""

    def __init__(self, base_url: str, api_key: SecretStr | None, timeout_s: float = 300.0,
                 attempts: int = 5, backoff_s: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s,
                                    transport=transport)

    def close(self) -> None:
        self._client.close()

    def aliases(self, name: str) -> dict[str, str]:
        """alias -> version of ``name`` ({} for a model the registry does not know)."""
        response = self._client.get(f"/v1/models/{name}/aliases")
        if response.status_code == 404:
            return {}
        response.raise_for_status()
        body = response.json()
        aliases = body.get("aliases", body) if isinstance(body, dict) else {}
        return {str(k): str(v) for k, v in aliases.items()}

    def set_alias(self, name: str, version: str, reason: str, actor: str,
                  alias: str = CHALLENGER) -> AliasResult:
        """``PUT /v1/models/{name}/aliases/{alias}``; see the module doc for the outcomes."""
        if self.api_key is None:
            return AliasResult(False, None, "no registry API key configured "
                               "(RTML_RETRAIN_WORKER_REGISTRY_API_KEY)", refused=True,
                               reason="no_api_key")
        headers = {API_KEY_HEADER: self.api_key.get_secret_value()}
        body = {"version": version, "actor": actor, "reason": reason}
        delay = self.backoff_s
        last = AliasResult(False, None, "not tried")
        for attempt in range(1, self.attempts + 1):
            try:
                if self._already(name, alias, version):
                    return AliasResult(True, 200, f"{alias} already points at version {version}")
                response = self._client.put(f"/v1/models/{name}/aliases/{alias}", json=body,
                                            headers=headers)
            except httpx.HTTPStatusError as exc:  # reading the aliases failed (5xx)
                last = AliasResult(False, exc.response.status_code, _detail(exc.response))
            except httpx.HTTPError as exc:
                last = AliasResult(False, None, f"registry unreachable: {exc!r}")
            else:
                status = response.status_code
                if status < 300:
                    return AliasResult(True, status, f"{alias} -> version {version}")
                if status == 503:  # set and audited; the registry re-publishes the event
                    return AliasResult(True, status, _detail(response))
                if status < 500:  # gate refusal (409 / 422), auth or request error: final
                    return AliasResult(False, status, _detail(response), refused=True,
                                       reason=_failed_checks(response) or f"http_{status}")
                last = AliasResult(False, status, _detail(response))
            if attempt < self.attempts:
                logger.warning("setting %s of %s to %s failed (attempt %d/%d): %s; retrying",
                               alias, name, version, attempt, self.attempts, last.detail)
                self._sleep(delay)
                delay *= 2
        return last

    def _already(self, name: str, alias: str, version: str) -> bool:
        """Whether a previous try (before a crash or a lost answer) already set it."""
        return self.aliases(name).get(alias) == version
