"""Promote a graduated shadow through the model-registry service (never MLflow directly).

Why through the registry: it runs the validation gate, writes the audit log
and publishes the ``model-events`` record scorers reload on. The auditor
only asks: ``PUT /v1/models/{name}/aliases/champion`` with the shadow's
version, then ``DELETE`` every shadow alias (``challenger``, ``shadow``,
``shadow-*``) that pointed at it, so the new champion is not also scored as
its own shadow. A refusal (the gate's 422, a 409, 401/403) is recorded with
the registry's detail and **not retried**: a person decides what next (the
approval endpoint retries on request). A 503 means the alias moved and is
audited but its event is still being re-published: that counts as applied.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import httpx
from pydantic import SecretStr

from rtml_common.service_config import API_KEY_HEADER
from rtml_models.aliases import CHAMPION, is_shadow_alias

logger = logging.getLogger(__name__)

#: Statuses meaning "the alias moved" (503: moved, model-events record pending).
MOVED = (200, 201, 503)


@dataclass(frozen=True)
class PromotionResult:
    """What the registry answered."""

    applied: bool
    status: str
    detail: str
    removed_aliases: list[str] = field(default_factory=list)


class RegistryClient:
    """The few registry calls a promotion needs."""

    def __init__(self, base_url: str, api_key: SecretStr | None, timeout_s: float,
                 actor: str = "rtml-shadow-auditor") -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.actor = actor

    def _headers(self) -> dict[str, str]:
        return {} if self.api_key is None else {API_KEY_HEADER: self.api_key.get_secret_value()}

    def aliases(self, model: str) -> dict[str, str]:
        response = httpx.get(f"{self.base_url}/v1/models/{model}/aliases", timeout=self.timeout_s)
        response.raise_for_status()
        return dict(response.json()["aliases"])

    def promote(self, model: str, version: str, reason: str, actor: str | None = None,
                ) -> PromotionResult:
        """Move ``champion`` to ``version``, then drop the shadow aliases that pointed at it."""
        who = actor or self.actor
        if self.api_key is None:
            return PromotionResult(False, "not_configured", "RTML_SHADOW_AUDITOR_REGISTRY_API_KEY "
                                   "is not set: the registry would refuse the write")
        try:
            before = self.aliases(model)
            response = httpx.put(f"{self.base_url}/v1/models/{model}/aliases/{CHAMPION}",
                                 json={"version": version, "actor": who, "reason": reason},
                                 headers=self._headers(), timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            return PromotionResult(False, "unreachable", f"registry call failed: {exc!r}")
        if response.status_code not in MOVED:
            return PromotionResult(False, "refused",
                                   f"HTTP {response.status_code}: {_detail(response)}")
        removed: list[str] = []
        problems: list[str] = []
        for alias, target in sorted(before.items()):
            if target != version or not is_shadow_alias(alias):
                continue
            try:
                gone = httpx.request(
                    "DELETE", f"{self.base_url}/v1/models/{model}/aliases/{alias}",
                    json={"actor": who, "reason": f"v{version} graduated to {CHAMPION}"},
                    headers=self._headers(), timeout=self.timeout_s)
            except httpx.HTTPError as exc:
                problems.append(f"removing {alias} failed: {exc!r}")
                continue
            if gone.status_code in MOVED:
                removed.append(alias)
            else:
                problems.append(f"removing {alias}: HTTP {gone.status_code}: {_detail(gone)}")
        detail = f"champion -> v{version} (HTTP {response.status_code})"
        if removed:
            detail += f"; removed {', '.join(removed)}"
        if problems:
            detail += "; " + "; ".join(problems)
        return PromotionResult(True, "applied", detail, removed)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    return str(body.get("detail", body))[:1000] if isinstance(body, dict) else str(body)[:1000]
