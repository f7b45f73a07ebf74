"""The HTTP API: reads for everyone, alias changes behind an API key and the gate.

:func:`create_app` takes its collaborators (registry, audit log, event
publisher, gate) instead of building them, so tests pass real ones pointing
at the fixture servers and ``__main__`` passes the configured ones.

Status codes: 401 missing or wrong ``X-API-Key``; 403 no key configured (the
registry is read-only); 404 unknown model, version or alias; 409 a no-op or
nothing to roll back to; 422 a malformed request (:class:`ValidationFailure`,
``detail`` a string) or a gate refusal (:class:`GateRefusal`, with the
report); 502 MLflow failed; 503 the alias changed but its ``model-events``
record was not delivered yet (the outbox keeps retrying). Writes check the
key before reading the body, so a caller without the key learns nothing
about its payload (:mod:`rtml_common.http_api`).

Endpoints are plain ``def``: they block on MLflow and on the gate's worker
process, so FastAPI runs them in its thread pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from rtml_common.asgi import RequestMetrics
from rtml_common.http_api import (
    ErrorBody,
    ValidationFailure,
    install_validation_handler,
    key_first_routes,
    key_guard,
)
from rtml_common.service_config import API_KEY_HEADER
from rtml_features.baseline import get_feature_set
from rtml_model_registry import ISSUE, SERVICE_NAME
from rtml_model_registry.aliases import (
    AliasChange,
    AliasService,
    BackendError,
    ChangeNotAnnounced,
    Conflict,
    GateRefused,
    NotFound,
)
from rtml_model_registry.audit.base import AuditLog
from rtml_model_registry.config import Settings
from rtml_model_registry.events import EventPublisher
from rtml_model_registry.gate.report import GateReport
from rtml_model_registry.gate.runner import Gate
from rtml_model_registry.locking import KeyedLocks
from rtml_model_registry.metrics import RegistryMetrics
from rtml_model_registry.outbox import Outbox, Republisher
from rtml_model_registry.schemas import (
    MODEL_NAME_PATTERN,
    VERSION_PATTERN,
    ActorReason,
    AliasChangeOut,
    Aliases,
    AuditEntryOut,
    AuditLogOut,
    ChainOut,
    EventDelivery,
    GateRefusal,
    Health,
    ModelList,
    ModelSummary,
    NotAnnounced,
    SetAliasRequest,
    VersionInfo,
    VersionList,
)
from rtml_models.registry.base import ModelRegistry

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong X-API-Key header."},
    403: {"model": ErrorBody, "description": "No API key configured: the registry is "
          "read-only."},
    404: {"model": ErrorBody, "description": "Unknown model, version or alias."},
    422: {"model": ValidationFailure, "description": "Malformed request: `detail` names "
          "each invalid part and why, `errors` lists them."},
    502: {"model": ErrorBody, "description": "MLflow failed."},
}
#: Reads: no key, so no 401/403.
_READ_ERRORS: dict[int | str, dict[str, Any]] = {
    code: _ERRORS[code] for code in (404, 422, 502)}
_CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    409: {"model": ErrorBody, "description": "Nothing to change."},
    422: {"model": GateRefusal | ValidationFailure,
          "description": "The gate refused the version (`GateRefusal`: the report), or the "
          "request is malformed (`ValidationFailure`)."},
    503: {"model": NotAnnounced, "description": "The alias changed and is audited, but its "
          "model-events record is not delivered yet; it is re-published until it is."},
}


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _configured_key(request: Request) -> SecretStr | None:
    return _settings(request).api_key


#: 403 when the registry is read-only, 401 for a missing or wrong key.
require_key = key_guard(_configured_key,
                        "registry is read-only: RTML_MODEL_REGISTRY_API_KEY is not set",
                        "The registry's API key (RTML_MODEL_REGISTRY_API_KEY).")


def check_alias(request: Request, alias: str) -> str:
    """``alias`` if the configuration allows it, else a 422 naming what is allowed."""
    problem = _settings(request).alias_problem(alias)
    if problem:
        raise HTTPException(422, problem)
    return alias


def valid_alias(request: Request, alias: Annotated[str, PathParam(
        description="champion, challenger, shadow or shadow-<suffix> (configurable).",
        examples=["champion"])]) -> str:
    return check_alias(request, alias)


Name = Annotated[str, PathParam(pattern=MODEL_NAME_PATTERN, description=(
    "Registered model name: letters, digits, '.', '_', '-', starting with a letter or digit "
    "(at most 256 characters)."), examples=["fraud-detector"])]
Version = Annotated[str, PathParam(pattern=VERSION_PATTERN, description="Version number.",
                                   examples=["3"])]
Alias = Annotated[str, Depends(valid_alias)]


def _change_out(change: AliasChange) -> AliasChangeOut:
    entry = change.entry
    return AliasChangeOut(model=entry.model, alias=entry.alias, action=str(entry.action),
                          version=entry.to_version, previous_version=entry.from_version,
                          audit_entry_id=entry.id,
                          event=EventDelivery.from_delivery(change.delivery), gate=change.gate)


def create_app(settings: Settings, registry: ModelRegistry, audit: AuditLog,
               publisher: EventPublisher, gate: Gate) -> FastAPI:
    """The registry API over ``registry``, gating with ``gate`` and auditing to ``audit``."""
    metrics = RegistryMetrics()
    outbox = Outbox(audit, publisher, KeyedLocks())
    service = AliasService(settings, registry, audit, gate, outbox, metrics)
    feature_set = get_feature_set(settings.feature_set)
    republisher = Republisher(outbox, settings.republish_interval_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        republisher.start()
        try:
            yield
        finally:
            republisher.stop()

    app = FastAPI(
        title=SERVICE_NAME,
        version="1",
        summary="Model versions, lineage and gated alias changes over MLflow "
                f"(issue #{ISSUE}).",
        description=(
            "Reads need no key. Alias changes (`PUT`, `POST .../rollback`, `DELETE`) and "
            f"`validate` need the `{API_KEY_HEADER}` header. Every alias change passes the "
            "validation gate, is appended to a hash-chained audit log and is published on "
            "the `model-events` topic. Versions are immutable: nothing here changes one."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    key_first_routes(app, require_key)
    install_validation_handler(app)
    app.state.service = service
    app.state.outbox = outbox
    app.add_middleware(RequestMetrics, record=metrics.request)

    write = [Depends(require_key)]

    # -- error mapping ------------------------------------------------------------

    @app.exception_handler(NotFound)
    def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=404)

    @app.exception_handler(Conflict)
    def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=409)

    @app.exception_handler(BackendError)
    def _backend(_: Request, exc: BackendError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=502)

    @app.exception_handler(GateRefused)
    def _refused(_: Request, exc: GateRefused) -> JSONResponse:
        body = GateRefusal(detail=exc.detail,
                           failed_checks=[check.name for check in exc.report.failures],
                           gate=exc.report)
        return JSONResponse(body.model_dump(mode="json"), status_code=422)

    @app.exception_handler(ChangeNotAnnounced)
    def _not_announced(_: Request, exc: ChangeNotAnnounced) -> JSONResponse:
        body = NotAnnounced(detail=exc.detail, change=_change_out(exc.change))
        return JSONResponse(body.model_dump(mode="json"), status_code=503,
                            headers={"Retry-After": str(int(settings.republish_interval_s or 30))})

    # -- reads --------------------------------------------------------------------

    @app.get("/healthz", tags=["health"])
    def healthz() -> Health:
        """Liveness, and what the gate checks against."""
        return Health(status="ok", read_only=settings.api_key is None,
                      feature_set=feature_set.name, feature_set_version=feature_set.version,
                      latency_budget_ms=settings.latency_budget_ms)

    @app.get("/v1/models", tags=["models"], responses={502: _ERRORS[502]})
    def list_models() -> ModelList:
        """Every registered model with its aliases and newest version."""
        models = service.list_models()
        return ModelList(models=[ModelSummary.from_model(m) for m in models])

    @app.get("/v1/models/{name}", tags=["models"], responses=_READ_ERRORS)
    def get_model(name: Name) -> ModelSummary:
        """One registered model."""
        for model in service.list_models():
            if model.name == name:
                return ModelSummary.from_model(model)
        raise NotFound(f"model {name!r} is not registered")

    @app.get("/v1/models/{name}/versions", tags=["models"], responses=_READ_ERRORS)
    def list_versions(name: Name) -> VersionList:
        """Every version of a model with its lineage, oldest first."""
        versions = service.versions(name)
        return VersionList(model=name, versions=[VersionInfo.from_version(v) for v in versions])

    @app.get("/v1/models/{name}/versions/{version}", tags=["models"], responses=_READ_ERRORS)
    def get_version(name: Name, version: Version) -> VersionInfo:
        """One version's lineage: run, data fingerprint, feature set, code, metrics, aliases."""
        return VersionInfo.from_version(service.version(name, version))

    @app.get("/v1/models/{name}/aliases", tags=["aliases"], responses=_READ_ERRORS)
    def get_aliases(name: Name) -> Aliases:
        """Alias -> version."""
        return Aliases(model=name, aliases=service.aliases(name))

    @app.get("/v1/models/{name}/audit", tags=["audit"], responses=_READ_ERRORS)
    def get_audit(name: Name, alias: Annotated[str | None, Query(
            description="Only this alias's entries.")] = None) -> AuditLogOut:
        """The model's alias changes, oldest first, and whether the whole log's chain verifies."""
        entries = audit.entries(name, alias)
        deliveries = audit.deliveries([entry.id for entry in entries])
        return AuditLogOut(
            model=name,
            entries=[AuditEntryOut.from_entry(e, deliveries[e.id]) for e in entries],
            chain=ChainOut.from_status(audit.verify_chain()),
        )

    # -- writes -------------------------------------------------------------------

    @app.put("/v1/models/{name}/aliases/{alias}", tags=["aliases"], dependencies=write,
             responses=_CHANGE_ERRORS)
    def set_alias(name: Name, alias: Alias, body: SetAliasRequest) -> AliasChangeOut:
        """Point an alias at a version: gate, move, audit, publish ``model-events``."""
        return _change_out(service.set_alias(name, alias, body.version, body.actor, body.reason))

    @app.post("/v1/models/{name}/aliases/{alias}/rollback", tags=["aliases"],
              dependencies=write, responses=_CHANGE_ERRORS)
    def rollback(name: Name, alias: Alias, body: ActorReason) -> AliasChangeOut:
        """Point an alias back at the version it had before its current one (per the audit
        log); the gate runs without the metric comparison."""
        return _change_out(service.rollback(name, alias, body.actor, body.reason))

    @app.delete("/v1/models/{name}/aliases/{alias}", tags=["aliases"], dependencies=write,
                responses=_CHANGE_ERRORS)
    def remove_alias(
        name: Name, alias: Alias,
        body: Annotated[ActorReason | None, Body(description="actor and reason (or pass them "
                                                  "as query parameters)")] = None,
        actor: Annotated[str | None, Query(description="Who (if no body).")] = None,
        reason: Annotated[str | None, Query(description="Why (if no body).")] = None,
    ) -> AliasChangeOut:
        """Remove an alias (no gate: nothing new starts serving); audited and published."""
        if body is None:
            try:
                body = ActorReason(actor=actor or "", reason=reason or "")
            except ValueError as exc:
                raise HTTPException(422, "actor and reason are required (JSON body or query "
                                    f"parameters): {_first_error(exc)}") from exc
        return _change_out(service.remove_alias(name, alias, body.actor, body.reason))

    @app.post("/v1/models/{name}/versions/{version}/validate", tags=["models"],
              dependencies=write, responses=_ERRORS)
    def validate(request: Request, name: Name, version: Version,
                 alias: Annotated[str | None, Query(
                     description="Check for this alias (champion adds the metric comparison).",
                     examples=["champion"])] = None) -> GateReport:
        """Run the gate only (dry run): nothing moves, nothing is audited."""
        if alias is not None:
            check_alias(request, alias)
        return service.validate(name, version, alias)

    app.openapi_tags = [
        {"name": "models", "description": "Registered models and their immutable versions."},
        {"name": "aliases", "description": "Gated, audited alias changes."},
        {"name": "audit", "description": "The append-only, hash-chained audit log."},
    ]
    return app


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors()]
        return "; ".join(parts)
    return str(exc)
