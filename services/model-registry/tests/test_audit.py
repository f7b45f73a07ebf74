"""The SQLite audit log: ordered, append-only at the database level, tamper-evident."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest

from rtml_model_registry.audit.base import (
    GENESIS_HASH,
    AuditAction,
    DeliveryStatus,
    NewAuditEntry,
)
from rtml_model_registry.audit.sqlite import SqliteAuditLog


def change(to: str | None, frm: str | None = None, alias: str = "champion",
           model: str = "fraud", action: AuditAction = AuditAction.SET) -> NewAuditEntry:
    return NewAuditEntry(model, alias, frm, to, action, "alice", f"to {to}",
                         {"passed": True, "checks": [{"name": "scores", "detail": "ok"}]})


@pytest.fixture
def log(tmp_path: Path) -> SqliteAuditLog:
    audit = SqliteAuditLog(tmp_path / "nested" / "audit.sqlite")
    audit.append(change("1"))
    audit.append(change("2", "1"))
    audit.append(change("7", alias="shadow", model="other"))
    audit.append(change("1", "2", action=AuditAction.ROLLBACK))
    return audit


def test_entries_are_ordered_chained_and_filterable(log: SqliteAuditLog) -> None:
    entries = log.entries()
    assert [e.id for e in entries] == [1, 2, 3, 4]
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(entries))
    assert [e.to_version for e in log.entries("fraud", "champion")] == ["1", "2", "1"]
    assert entries[3].action is AuditAction.ROLLBACK
    assert entries[0].gate == {"passed": True, "checks": [{"name": "scores", "detail": "ok"}]}
    assert entries[0].at.tzinfo is not None
    assert log.verify_chain().valid


@pytest.mark.parametrize("statement", [
    "UPDATE audit_entries SET reason = 'nothing to see' WHERE id = 2",
    "DELETE FROM audit_entries WHERE id = 4",
    "UPDATE event_deliveries SET status = 'delivered'",
    "DELETE FROM event_deliveries",
])
def test_update_and_delete_are_refused_by_the_database(log: SqliteAuditLog,
                                                       statement: str) -> None:
    log.record_delivery(1, DeliveryStatus.FAILED, "broker down")
    with sqlite3.connect(log.path) as db, pytest.raises(sqlite3.DatabaseError,
                                                         match="append-only"):
        db.execute(statement)
    assert len(log.entries()) == 4


def tamper(path: Path, statement: str) -> None:
    """What someone with write access to the file could do: drop the guard, then edit."""
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER audit_entries_no_update")
        db.execute("DROP TRIGGER audit_entries_no_delete")
        db.execute(statement)


@pytest.mark.parametrize(("statement", "bad_id", "words"), [
    ("UPDATE audit_entries SET actor = 'mallory' WHERE id = 2", 2, "was altered"),
    ("UPDATE audit_entries SET gate = NULL WHERE id = 1", 1, "was altered"),
    ("DELETE FROM audit_entries WHERE id = 3", 4, "entry 3 is missing"),
])
def test_a_tampered_log_fails_verification_at_the_changed_entry(
        log: SqliteAuditLog, statement: str, bad_id: int, words: str) -> None:
    tamper(log.path, statement)
    status = log.verify_chain()
    assert not status.valid
    assert status.first_bad_id == bad_id
    assert words in status.detail


def test_rehashing_an_edited_entry_breaks_the_next_link(log: SqliteAuditLog) -> None:
    from dataclasses import replace

    from rtml_model_registry.audit.base import entry_hash

    edited = replace(log.entries()[1], actor="mallory")
    tamper(log.path, f"UPDATE audit_entries SET actor = 'mallory', entry_hash = "
                     f"'{entry_hash(edited)}' WHERE id = 2")
    status = log.verify_chain()
    assert (status.valid, status.first_bad_id) == (False, 3)


def test_deliveries_track_the_outbox(log: SqliteAuditLog) -> None:
    assert [e.id for e in log.pending()] == [1, 2, 3, 4]
    log.record_delivery(1, DeliveryStatus.FAILED, "broker down")
    log.record_delivery(1, DeliveryStatus.SUPERSEDED, "entry 2 is newer")
    log.record_delivery(2, DeliveryStatus.FAILED, "broker down")
    log.record_delivery(3, DeliveryStatus.DELIVERED)
    assert [e.id for e in log.pending()] == [2, 4]
    assert [e.id for e in log.pending("fraud")] == [2, 4]
    deliveries = log.deliveries([1, 2, 3, 4])
    assert (deliveries[1].status, deliveries[1].attempts) == (DeliveryStatus.SUPERSEDED, 2)
    assert (deliveries[2].status, deliveries[2].detail) == (DeliveryStatus.FAILED, "broker down")
    assert deliveries[4].status is DeliveryStatus.PENDING


def test_reopening_keeps_the_log_and_its_guards(log: SqliteAuditLog) -> None:
    again = SqliteAuditLog(log.path)
    appended = again.append(change("3", "1"))
    assert appended.id == 5
    assert appended.prev_hash == log.entries()[3].entry_hash
    assert again.verify_chain().valid


def test_blank_actor_is_refused_by_the_schema(tmp_path: Path) -> None:
    audit = SqliteAuditLog(tmp_path / "audit.sqlite")
    with pytest.raises(sqlite3.IntegrityError):
        audit.append(NewAuditEntry("m", "champion", None, "1", AuditAction.SET, "", "why"))
    assert audit.entries() == []
