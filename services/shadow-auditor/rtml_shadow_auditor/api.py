"""The auditor's small HTTP API: health, figures, verdicts, the report, approvals.

Reads need no key. Approving a recommendation promotes a model, so it needs
``X-API-Key`` (``RTML_SHADOW_AUDITOR_API_KEY``); answered like the registry:
403 when no key is configured (approvals are off), 401 for a missing or
wrong key, 404 unknown recommendation, 409 already applied / being applied,
422 malformed body. The key is checked before the body is read, so a caller
without it learns nothing about its payload (:mod:`rtml_common.http_api`).
Every status an endpoint can answer is in its OpenAPI ``responses``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from rtml_common.http_api import (
    ErrorBody,
    ValidationFailure,
    install_validation_handler,
    key_first_routes,
    key_guard,
)
from rtml_shadow_auditor.evaluator import Evaluator, NotApprovable
from rtml_shadow_auditor.store import Store

_APPROVE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong X-API-Key header."},
    403: {"model": ErrorBody, "description": "No API key configured: approvals are off."},
    404: {"model": ErrorBody, "description": "No such recommendation."},
    409: {"model": ErrorBody, "description": "Already applied or being applied, for another "
          "model, or out of date (the registry's aliases moved or could not be read)."},
    422: {"model": ValidationFailure, "description": "Malformed request."},
}
_NO_REPORT: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "No report yet: no evaluation has seen a "
          "champion prediction."}}

Actor = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Approval(BaseModel):
    """Who approves (recorded on the recommendation and sent to the registry as the actor)."""

    model_config = ConfigDict(extra="forbid")
    actor: Actor = Field(examples=["alice@fraud-ops"])


class RecommendationOut(BaseModel):
    """A graduation and its outcome (``status``: pending, applying, applied, refused, failed)."""

    id: int = Field(examples=[1])
    model_name: str = Field(examples=["fraud-detector"])
    model_version: str = Field(examples=["4"])
    champion_version: str = Field(examples=["3"])
    created_at: str
    status: str = Field(examples=["applied"])
    summary: str
    report_path: str | None
    decided_by: str | None = Field(examples=["alice@fraud-ops"])
    decided_at: str | None
    detail: str


def create_app(evaluator: Evaluator, store: Store,
               status: Callable[[], dict[str, Any]] | None = None) -> FastAPI:
    """The API over a running evaluator; ``status`` adds the consumer's state to /healthz."""
    settings = evaluator.settings
    app = FastAPI(title="rtml shadow auditor", version="1")
    require_key = key_guard(lambda _request: settings.api_key,
                            "approvals are off: RTML_SHADOW_AUDITOR_API_KEY is not set",
                            "The auditor's API key (RTML_SHADOW_AUDITOR_API_KEY).")
    key_first_routes(app, require_key)
    install_validation_handler(app)

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

    @app.get("/report", response_class=HTMLResponse, tags=["audit"], responses=_NO_REPORT)
    def report() -> HTMLResponse:
        """The latest HTML audit report (503 before the first evaluation with a champion)."""
        latest = evaluator.latest
        if latest is None or latest.html is None:
            raise HTTPException(503, "no report yet: no evaluation has seen a champion "
                                     "prediction")
        return HTMLResponse(latest.html)

    @app.post("/v1/recommendations/{rec_id}/approve", tags=["recommendations"],
              dependencies=[Depends(require_key)], responses=_APPROVE_ERRORS)
    def approve(rec_id: int, body: Approval) -> RecommendationOut:
        """Promote the recommended shadow through the registry (its gate still decides)."""
        try:
            return RecommendationOut(**evaluator.approve(rec_id, body.actor).to_dict())
        except NotApprovable as exc:
            raise HTTPException(exc.status, exc.detail) from None

    return app
