"""The auditor's small HTTP API: health, figures, verdicts, the report, approvals.

Reads need no key. Approving a recommendation promotes a model, so it needs
``X-API-Key`` (``RTML_SHADOW_AUDITOR_API_KEY``); answered like the registry:
403 when no key is configured (approvals are off), 401 for a missing or
wrong key, 404 unknown recommendation, 409 already applied / being applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Security
from fastapi.responses import HTMLResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from rtml_common.service_config import API_KEY_HEADER, KeyRejected, verify_api_key
from rtml_shadow_auditor.evaluator import Evaluator, NotApprovable
from rtml_shadow_auditor.store import Store

_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                           description="The auditor's API key (RTML_SHADOW_AUDITOR_API_KEY).")

Actor = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Approval(BaseModel):
    """Who approves (recorded on the recommendation and sent to the registry as the actor)."""

    model_config = ConfigDict(extra="forbid")
    actor: Actor = Field(examples=["alice@fraud-ops"])


def create_app(evaluator: Evaluator, store: Store,
               status: Callable[[], dict[str, Any]] | None = None) -> FastAPI:
    """The API over a running evaluator; ``status`` adds the consumer's state to /healthz."""
    settings = evaluator.settings
    app = FastAPI(title="rtml shadow auditor", version="1")

    def require_key(key: Annotated[str | None, Security(_key_header)]) -> None:
        try:
            verify_api_key(settings.api_key, key,
                           "approvals are off: RTML_SHADOW_AUDITOR_API_KEY is not set")
        except KeyRejected as rejected:
            headers = {"WWW-Authenticate": API_KEY_HEADER} if rejected.status == 401 else None
            raise HTTPException(rejected.status, rejected.detail, headers=headers) from None

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        latest = evaluator.latest
        return {"status": "ok", "model_name": settings.model_name,
                "auto_promote": settings.auto_promote,
                "evaluations": evaluator.evaluations,
                "last_evaluation": (latest.evaluation.evaluated_at.isoformat()
                                    if latest else None),
                "state": store.counts(), **(status() if status else {})}

    @app.get("/v1/audit", tags=["audit"])
    def audit() -> dict[str, Any]:
        """Figures per version from the latest evaluation (null: not available yet)."""
        return evaluator.audit_json()

    @app.get("/v1/verdicts", tags=["audit"])
    def verdicts() -> dict[str, Any]:
        """Latest verdict per shadow version, and every recommendation with its outcome."""
        return {"model_name": settings.model_name, "auto_promote": settings.auto_promote,
                "verdicts": store.verdicts(),
                "recommendations": [r.to_dict() for r in
                                    store.recommendations(settings.model_name)]}

    @app.get("/report", response_class=HTMLResponse, tags=["audit"])
    def report() -> HTMLResponse:
        """The latest HTML audit report (503 before the first evaluation with a champion)."""
        latest = evaluator.latest
        if latest is None or latest.html is None:
            raise HTTPException(503, "no report yet: no evaluation has seen a champion "
                                     "prediction")
        return HTMLResponse(latest.html)

    @app.post("/v1/recommendations/{rec_id}/approve", tags=["recommendations"])
    def approve(rec_id: int, body: Approval,
                key: Annotated[str | None, Security(_key_header)] = None) -> dict[str, Any]:
        """Promote the recommended shadow through the registry (its gate still decides)."""
        require_key(key)
        try:
            return evaluator.approve(rec_id, body.actor).to_dict()
        except NotApprovable as exc:
            raise HTTPException(exc.status, exc.detail) from None

    return app
