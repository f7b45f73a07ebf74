"""Moving aliases: gate, move, audit, announce — in that order, one model at a time.

Every change follows the same steps under the model's lock:

1. check the request against the registry (unknown model / version: 404,
   no-op: 409) and run the gate (refusal: 422 with the report);
2. move the alias in the registry;
3. append the audit entry (if that fails the alias is moved back, so no
   change goes unaudited);
4. publish the ``model-events`` record through the outbox. If it isn't
   delivered the change stands (it passed the gate and is audited) and
   :class:`ChangeNotAnnounced` tells the caller; the outbox retries.

Errors are typed so the HTTP layer maps each to one status code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from rtml_model_registry.audit.base import (
    AuditAction,
    AuditEntry,
    AuditLog,
    Delivery,
    DeliveryStatus,
    NewAuditEntry,
)
from rtml_model_registry.config import Settings
from rtml_model_registry.gate.report import GateReport
from rtml_model_registry.gate.runner import Gate
from rtml_model_registry.history import NoEarlierVersion, rollback_target
from rtml_model_registry.locking import KeyedLocks
from rtml_model_registry.metrics import RegistryMetrics
from rtml_model_registry.outbox import Outbox
from rtml_models.registry.base import (
    ModelRegistry,
    ModelVersion,
    NotFoundError,
    RegisteredModel,
    RegistryError,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Highest version number a registry can hold: MLflow keeps versions in a 32-bit
#: integer column and numbers them from 1, so a larger number names no version.
#: Asking MLflow for one fails server-side (an overflow), which its client
#: retries for seconds before a 502; it is answered as unknown (404) at once.
MAX_VERSION = 2**31 - 1


class ServiceError(Exception):
    """A request the service refuses; ``detail`` is the client-facing reason."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ServiceError):
    """Unknown model, version or alias (404)."""


class Conflict(ServiceError):
    """The change is a no-op or has nothing to act on (409)."""


class BackendError(ServiceError):
    """MLflow failed or is unreachable (502)."""


class GateRefused(ServiceError):
    """The gate refused the version (422); carries the full report."""

    def __init__(self, report: GateReport) -> None:
        super().__init__(report.summary())
        self.report = report


@dataclass(frozen=True)
class AliasChange:
    """A change that was made and audited, and whether its event was delivered."""

    entry: AuditEntry
    delivery: Delivery
    gate: GateReport | None


class ChangeNotAnnounced(ServiceError):
    """The alias moved and is audited, but its ``model-events`` record is not delivered yet."""

    def __init__(self, change: AliasChange, detail: str) -> None:
        super().__init__(detail)
        self.change = change


class AliasService:
    """Alias changes of every model, with their gate, audit entry and event."""

    def __init__(self, settings: Settings, registry: ModelRegistry, audit: AuditLog,
                 gate: Gate, outbox: Outbox, metrics: RegistryMetrics) -> None:
        self.settings = settings
        self.registry = registry
        self.audit = audit
        self.gate = gate
        self.outbox = outbox
        self.locks: KeyedLocks = outbox.locks
        self.metrics = metrics

    # -- reads ------------------------------------------------------------------

    def list_models(self) -> list[RegisteredModel]:
        """Every registered model."""
        return self._call(self.registry.list_models, "no registered models")

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first."""
        return self._call(lambda: self.registry.list_versions(name),
                          f"model {name!r} is not registered")

    def aliases(self, name: str) -> dict[str, str]:
        """Alias -> version of a registered model (NotFound if unknown)."""
        return self._call(lambda: self.registry.aliases(name), f"model {name!r} is not registered")

    def version(self, name: str, version: str) -> ModelVersion:
        """One version, with a 404 that says whether the model or the version is unknown."""
        self.aliases(name)
        if not _plausible_version(version):
            raise NotFound(f"model {name!r} has no version {version} (versions are numbered "
                           f"1 to {MAX_VERSION})")
        return self._call(lambda: self.registry.get_version(name, version),
                          f"model {name!r} has no version {version}")

    # -- writes -----------------------------------------------------------------

    def validate(self, name: str, version: str, alias: str | None) -> GateReport:
        """Run the gate only (dry run): nothing moves, nothing is audited."""
        self.version(name, version)
        return self.gate.run(name, version, alias)

    def set_alias(self, name: str, alias: str, version: str, actor: str,
                  reason: str) -> AliasChange:
        """Point ``alias`` at ``version`` if the gate allows it."""
        with self.locks.hold(name):
            self.version(name, version)
            current = self.aliases(name).get(alias)
            if current == version:
                raise Conflict(f"{name}@{alias} already points at v{version}")
            report = self._gate(name, version, alias, compare_metrics=True)
            entry = NewAuditEntry(name, alias, current, version, AuditAction.SET, actor, reason,
                                  report.model_dump(mode="json"))
            return self._commit(entry, report,
                                apply=lambda: self.registry.set_alias(name, alias, version),
                                undo=lambda: self._restore(name, alias, current))

    def rollback(self, name: str, alias: str, actor: str, reason: str) -> AliasChange:
        """Point ``alias`` back at the version it had before its current one."""
        with self.locks.hold(name):
            current = self.aliases(name).get(alias)
            try:
                target = rollback_target(self.audit.entries(name, alias), current)
            except NoEarlierVersion as exc:
                raise Conflict(f"cannot roll back {name}@{alias}: {exc}") from exc
            self.version(name, target)
            # The target was good enough before; the gate re-checks it still loads,
            # matches today's feature set and meets today's budget, without the
            # metric comparison (it is older than the version being replaced).
            report = self._gate(name, target, alias, compare_metrics=False)
            entry = NewAuditEntry(name, alias, current, target, AuditAction.ROLLBACK, actor,
                                  reason, report.model_dump(mode="json"))
            return self._commit(entry, report,
                                apply=lambda: self.registry.set_alias(name, alias, target),
                                undo=lambda: self._restore(name, alias, current))

    def remove_alias(self, name: str, alias: str, actor: str, reason: str) -> AliasChange:
        """Remove ``alias`` (no gate: nothing new starts serving)."""
        with self.locks.hold(name):
            current = self.aliases(name).get(alias)
            if current is None:
                raise NotFound(f"{name}@{alias} is not set")
            entry = NewAuditEntry(name, alias, current, None, AuditAction.REMOVE, actor, reason)
            return self._commit(entry, None,
                                apply=lambda: self.registry.delete_alias(name, alias),
                                undo=lambda: self._restore(name, alias, current))

    # -- steps ------------------------------------------------------------------

    def _gate(self, name: str, version: str, alias: str, compare_metrics: bool) -> GateReport:
        report = self.gate.run(name, version, alias, compare_metrics=compare_metrics)
        self.metrics.gate(report)
        if not report.passed:
            logger.info("%s", report.summary())
            raise GateRefused(report)
        return report

    def _commit(self, new: NewAuditEntry, report: GateReport | None,
                apply: Callable[[], None], undo: Callable[[], None]) -> AliasChange:
        self._call(apply, f"{new.model} or its version is gone")
        try:
            entry = self.audit.append(new)
        except Exception:
            logger.exception("audit append failed; moving %s@%s back", new.model, new.alias)
            try:
                undo()
            except Exception:
                logger.exception("could not move %s@%s back to %s after the audit failure",
                                 new.model, new.alias, new.from_version)
            raise
        self.metrics.alias_changed(new.alias, str(new.action))
        self.outbox.deliver(new.model)
        delivery = self.audit.deliveries([entry.id])[entry.id]
        change = AliasChange(entry, delivery, report)
        if delivery.status is not DeliveryStatus.DELIVERED:
            self.metrics.undelivered()
            moved = (f"{new.model}@{new.alias} was removed" if new.to_version is None
                     else f"{new.model}@{new.alias} now points at v{new.to_version}")
            interval = self.settings.republish_interval_s
            retry = (f"it is re-published every {interval:g} s until delivered" if interval
                     else "it is re-published at the next change of this model or restart")
            raise ChangeNotAnnounced(change, (
                f"{moved} (audit entry {entry.id}), but its model-events record was not "
                f"delivered ({delivery.detail or delivery.status}); scorers have not been told "
                f"yet: {retry}"))
        return change

    def _restore(self, name: str, alias: str, version: str | None) -> None:
        if version is None:
            self.registry.delete_alias(name, alias)
        else:
            self.registry.set_alias(name, alias, version)

    @staticmethod
    def _call(func: Callable[[], T], not_found: str) -> T:
        try:
            return func()
        except NotFoundError as exc:
            raise NotFound(not_found) from exc
        except RegistryError as exc:
            raise BackendError(f"MLflow: {exc}") from exc


def _plausible_version(version: str) -> bool:
    """Whether ``version`` is a number MLflow could have given (digits, 1..MAX_VERSION)."""
    return (version.isascii() and version.isdigit() and len(version) <= len(str(MAX_VERSION))
            and 0 < int(version) <= MAX_VERSION)
