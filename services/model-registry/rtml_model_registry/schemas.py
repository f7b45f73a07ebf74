"""Request and response bodies of the HTTP API, with the examples OpenAPI shows.

Requests are strict (unknown fields refused, ``actor`` and ``reason``
non-blank after trimming) so a typo is a precise 422, not a silently
ignored field. Responses are built from the registry's and the audit log's
own types by the ``from_*`` constructors.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from rtml_model_registry.audit.base import AuditEntry, ChainStatus, Delivery, DeliveryStatus
from rtml_model_registry.gate.report import GateReport
from rtml_models.registry.base import ModelVersion, RegisteredModel

VERSION_PATTERN = r"^[1-9][0-9]*$"
#: Model names the API accepts. MLflow refuses blank names (Python's ``strip``: control
#: characters such as \x1e count as blank), ``/``, ``:`` and non-canonical paths with an
#: error the backend can only report as a 502; names here are slugs, so anything else is
#: a precise 422 before MLflow is asked.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$"

Actor = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]

_ACTOR = Field(description="Who asks (a person or a system); recorded in the audit log and "
               "the model-events record.", examples=["alice@fraud-ops"])
_REASON = Field(description="Why; recorded in the audit log and the model-events record.",
                examples=["retrained on April data: AP +0.02 on the holdout"])


class ActorReason(BaseModel):
    """Who changes an alias and why (required for every change)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"actor": "alice@fraud-ops", "reason": "v4 scores NaN for new terminals"}]})

    actor: Actor = _ACTOR
    reason: Reason = _REASON


class SetAliasRequest(ActorReason):
    """Point an alias at a version (after the gate)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"version": "3", "actor": "alice@fraud-ops",
         "reason": "retrained on April data: AP +0.02 on the holdout"}]})

    version: str = Field(pattern=VERSION_PATTERN, description="The version number.",
                         examples=["3"])

    @field_validator("version", mode="before")
    @classmethod
    def _number_as_text(cls, value: Any) -> Any:
        """Accept ``3`` as well as ``"3"``: versions are numbers to people."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    read_only: bool = Field(description="True when no API key is configured.")
    feature_set: str = Field(examples=["baseline"])
    feature_set_version: str = Field(examples=["9476c2716c3a"])
    latency_budget_ms: float = Field(examples=[20.0])


class ModelSummary(BaseModel):
    name: str = Field(examples=["fraud-detector"])
    description: str = ""
    aliases: dict[str, str] = Field(examples=[{"champion": "3", "shadow": "4"}])
    latest_version: str | None = Field(examples=["4"])

    @classmethod
    def from_model(cls, model: RegisteredModel) -> ModelSummary:
        return cls(name=model.name, description=model.description, aliases=model.aliases,
                   latest_version=model.latest_version)


class ModelList(BaseModel):
    models: list[ModelSummary]


class VersionInfo(BaseModel):
    """One immutable version and its lineage."""

    name: str = Field(examples=["fraud-detector"])
    version: str = Field(examples=["3"])
    created_at: datetime
    run_id: str | None = Field(description="The MLflow run that trained it.",
                               examples=["26df27f3a37441959aff971e08483c45"])
    source: str = Field(description="Where its artifact lives.")
    flavor: str | None = Field(examples=["xgboost"])
    digest: str | None = Field(description="sha256 of its artifact manifest, verified on load.")
    feature_set: str | None = Field(examples=["baseline"])
    feature_set_version: str | None = Field(examples=["9476c2716c3a"])
    data_fingerprint: str | None = Field(description="Hash of the training data.")
    code_version: str | None = Field(description="Git commit of the training code.")
    parent_version: str | None = Field(description="What an online model's checkpoint "
                                       "continued from.")
    aliases: list[str] = Field(examples=[["champion"]])
    metrics: dict[str, float] = Field(description="The training run's metrics.",
                                      examples=[{"auc": 0.91, "ap": 0.63, "cp_at_100": 0.27}])
    tags: dict[str, str]
    description: str = ""

    @classmethod
    def from_version(cls, v: ModelVersion) -> VersionInfo:
        return cls(name=v.name, version=v.version, created_at=v.created_at, run_id=v.run_id,
                   source=v.source, flavor=v.flavor, digest=v.digest, feature_set=v.feature_set,
                   feature_set_version=v.feature_set_version,
                   data_fingerprint=v.data_fingerprint, code_version=v.code_version,
                   parent_version=v.parent_version, aliases=list(v.aliases),
                   metrics=v.metrics, tags=v.tags, description=v.description)


class VersionList(BaseModel):
    model: str
    versions: list[VersionInfo] = Field(description="Oldest first.")


class Aliases(BaseModel):
    model: str = Field(examples=["fraud-detector"])
    aliases: dict[str, str] = Field(examples=[{"champion": "3", "shadow": "4"}])


class EventDelivery(BaseModel):
    """Fate of an audit entry's model-events record."""

    status: DeliveryStatus
    attempts: int
    detail: str = ""

    @classmethod
    def from_delivery(cls, delivery: Delivery) -> EventDelivery:
        return cls(status=delivery.status, attempts=delivery.attempts, detail=delivery.detail)


class AuditEntryOut(BaseModel):
    id: int = Field(examples=[12])
    model: str
    alias: str
    action: str = Field(examples=["set"])
    from_version: str | None = Field(examples=["2"])
    to_version: str | None = Field(examples=["3"])
    actor: str
    reason: str
    at: datetime
    gate: dict[str, Any] | None = Field(description="The gate report that allowed the change.")
    prev_hash: str
    entry_hash: str
    event: EventDelivery

    @classmethod
    def from_entry(cls, entry: AuditEntry, delivery: Delivery) -> AuditEntryOut:
        return cls(id=entry.id, model=entry.model, alias=entry.alias, action=str(entry.action),
                   from_version=entry.from_version, to_version=entry.to_version,
                   actor=entry.actor, reason=entry.reason, at=entry.at, gate=entry.gate,
                   prev_hash=entry.prev_hash, entry_hash=entry.entry_hash,
                   event=EventDelivery.from_delivery(delivery))


class ChainOut(BaseModel):
    valid: bool
    entries: int = Field(description="Entries verified (the whole log, every model).")
    detail: str = Field(examples=["all 12 entries verify"])
    first_bad_id: int | None = None

    @classmethod
    def from_status(cls, status: ChainStatus) -> ChainOut:
        return cls(valid=status.valid, entries=status.entries, detail=status.detail,
                   first_bad_id=status.first_bad_id)


class AuditLogOut(BaseModel):
    model: str
    entries: list[AuditEntryOut] = Field(description="Oldest first.")
    chain: ChainOut


class AliasChangeOut(BaseModel):
    """An alias change that was made and audited."""

    model: str = Field(examples=["fraud-detector"])
    alias: str = Field(examples=["champion"])
    action: str = Field(examples=["set"])
    version: str | None = Field(description="What the alias points at now (None: removed).",
                                examples=["3"])
    previous_version: str | None = Field(examples=["2"])
    audit_entry_id: int = Field(examples=[12])
    event: EventDelivery
    gate: GateReport | None = Field(description="The gate report (None for a removal).")


class GateRefusal(BaseModel):
    """The gate refused: ``detail`` names each failed check and why; ``gate`` is the report."""

    detail: str = Field(examples=["gate refused fraud-detector v4 for champion: scores: 12 of "
                                  "2000 held-out scores are NaN (first at row 3)"])
    failed_checks: list[str] = Field(examples=[["scores"]])
    gate: GateReport


class NotAnnounced(BaseModel):
    """The alias changed and is audited, but scorers were not told yet (503)."""

    detail: str
    change: AliasChangeOut
