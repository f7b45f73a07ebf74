"""The audit log contract: every alias change, append-only and tamper-evident.

Contract of an :class:`AuditLog` backend:

* **Append-only.** :meth:`AuditLog.append` is the only write of an entry;
  entries are never updated or deleted (backends refuse it at the storage
  level where they can, e.g. SQLite triggers).
* **Ordered.** Entry ids are 1, 2, 3, ... in append order, over all models;
  :meth:`AuditLog.entries` returns them oldest first.
* **Chained.** Each entry stores the hash of the previous entry
  (:data:`GENESIS_HASH` for the first) and its own hash over all of its
  fields (:func:`entry_hash`), so editing, deleting or reordering any entry
  breaks :meth:`AuditLog.verify_chain` at that entry.
* **Outbox.** Each entry is also the ``model-events`` record it must cause.
  Delivery attempts are recorded beside it (append-only too, but outside the
  chain: they are operational facts, not decisions); :meth:`AuditLog.pending`
  lists entries whose event is neither delivered nor superseded, so a
  crashed or Kafka-less moment never leaves an alias change unannounced.

An entry: id, model, alias, from_version, to_version, action (set / remove /
rollback), actor, reason, the gate report that allowed it (JSON, None for a
removal), at (UTC), previous entry hash, entry hash.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

#: ``prev_hash`` of the first entry.
GENESIS_HASH = "0" * 64


class AuditAction(StrEnum):
    """What an entry did to its alias."""

    SET = "set"
    REMOVE = "remove"
    ROLLBACK = "rollback"


class DeliveryStatus(StrEnum):
    """Fate of an entry's ``model-events`` record."""

    DELIVERED = "delivered"
    #: An attempt failed; the entry stays pending and is retried.
    FAILED = "failed"
    #: Not sent: a later entry for the same alias was delivered, and sending this
    #: one afterwards would make scorers switch to an outdated version.
    SUPERSEDED = "superseded"
    #: No attempt recorded yet.
    PENDING = "pending"


@dataclass(frozen=True)
class NewAuditEntry:
    """What the caller decides; the log adds id, time and hashes."""

    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    action: AuditAction
    actor: str
    reason: str
    gate: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class AuditEntry(NewAuditEntry):
    """An appended entry."""

    id: int
    at: datetime
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True)
class Delivery:
    """The latest delivery record of an entry's event, with the attempt count."""

    status: DeliveryStatus
    attempts: int = 0
    detail: str = ""
    at: datetime | None = None


@dataclass(frozen=True)
class ChainStatus:
    """Result of :meth:`AuditLog.verify_chain`."""

    valid: bool
    entries: int
    detail: str
    first_bad_id: int | None = None


def canonical_gate(gate: dict[str, Any] | None) -> str | None:
    """The gate report as canonical JSON (what is stored and hashed)."""
    return None if gate is None else json.dumps(gate, sort_keys=True, separators=(",", ":"))


def entry_hash(entry: AuditEntry) -> str:
    """sha256 over every field but the hash itself, as canonical JSON."""
    payload = {
        "id": entry.id, "model": entry.model, "alias": entry.alias,
        "from_version": entry.from_version, "to_version": entry.to_version,
        "action": str(entry.action), "actor": entry.actor, "reason": entry.reason,
        "gate": canonical_gate(entry.gate), "at": entry.at.isoformat(),
        "prev_hash": entry.prev_hash,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def verify_entries(entries: list[AuditEntry]) -> ChainStatus:
    """Check ids, links and hashes of a whole log, oldest first."""
    previous = GENESIS_HASH
    for expected_id, entry in enumerate(entries, start=1):
        if entry.id != expected_id:
            return ChainStatus(False, len(entries), f"entry {expected_id} is missing (found "
                               f"id {entry.id} in its place)", entry.id)
        if entry.prev_hash != previous:
            return ChainStatus(False, len(entries), f"entry {entry.id} does not link to the "
                               "hash of the entry before it", entry.id)
        actual = entry_hash(entry)
        if actual != entry.entry_hash:
            return ChainStatus(False, len(entries), f"entry {entry.id} was altered: its "
                               "contents no longer match its hash", entry.id)
        previous = entry.entry_hash
    return ChainStatus(True, len(entries), f"all {len(entries)} entries verify")


class AuditLog(ABC):
    """Storage of alias-change history (see the module docstring for the contract)."""

    @abstractmethod
    def append(self, entry: NewAuditEntry) -> AuditEntry:
        """Append ``entry`` atomically after the current last one; return it as stored."""

    @abstractmethod
    def entries(self, model: str | None = None, alias: str | None = None) -> list[AuditEntry]:
        """Entries, oldest first, optionally of one model (and alias)."""

    @abstractmethod
    def verify_chain(self) -> ChainStatus:
        """Re-hash the whole log and report the first entry that doesn't verify."""

    @abstractmethod
    def record_delivery(self, entry_id: int, status: DeliveryStatus, detail: str = "") -> None:
        """Append the outcome of an attempt to publish an entry's event."""

    @abstractmethod
    def deliveries(self, entry_ids: list[int]) -> dict[int, Delivery]:
        """Latest delivery state of each entry (PENDING when never attempted)."""

    @abstractmethod
    def pending(self, model: str | None = None) -> list[AuditEntry]:
        """Entries whose event is neither delivered nor superseded, oldest first."""
