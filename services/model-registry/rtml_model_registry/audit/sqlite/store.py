""":class:`~rtml_model_registry.audit.base.AuditLog` in one SQLite file.

Append-only is enforced by the database, not only by this class: triggers
abort every ``UPDATE`` and ``DELETE`` on both tables, so a bug or a stray
``sqlite3`` session can't rewrite history. Someone who drops the triggers
can, which is what the hash chain is for: :meth:`SqliteAuditLog.verify_chain`
finds the first altered entry.

Each operation opens its own connection (SQLite connections don't cross
threads, and the API serves from a thread pool); an append runs in a
``BEGIN IMMEDIATE`` transaction so reading the last hash and inserting the
next entry are atomic even across processes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from rtml_common.events import utcnow
from rtml_model_registry.audit.base import (
    GENESIS_HASH,
    AuditAction,
    AuditEntry,
    AuditLog,
    ChainStatus,
    Delivery,
    DeliveryStatus,
    NewAuditEntry,
    canonical_gate,
    entry_hash,
    verify_entries,
)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_entries (
    id INTEGER PRIMARY KEY,
    model TEXT NOT NULL,
    alias TEXT NOT NULL,
    from_version TEXT,
    to_version TEXT,
    action TEXT NOT NULL CHECK (action IN ('set', 'remove', 'rollback')),
    actor TEXT NOT NULL CHECK (length(actor) > 0),
    reason TEXT NOT NULL CHECK (length(reason) > 0),
    gate TEXT,
    at TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    entry_hash TEXT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS audit_entries_model_alias ON audit_entries (model, alias, id);
CREATE TABLE IF NOT EXISTS event_deliveries (
    seq INTEGER PRIMARY KEY,
    entry_id INTEGER NOT NULL REFERENCES audit_entries (id),
    status TEXT NOT NULL CHECK (status IN ('delivered', 'failed', 'superseded')),
    detail TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS event_deliveries_entry ON event_deliveries (entry_id, seq);
"""

_TABLES = ("audit_entries", "event_deliveries")


def _append_only_triggers() -> str:
    statements = []
    for table in _TABLES:
        for operation in ("UPDATE", "DELETE"):
            statements.append(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{operation.lower()} "
                f"BEFORE {operation} ON {table} BEGIN "
                f"SELECT RAISE(ABORT, 'audit log is append-only: {operation} on {table} "
                "refused'); END;"
            )
    return "\n".join(statements)


_COLUMNS = ("id, model, alias, from_version, to_version, action, actor, reason, gate, at, "
            "prev_hash, entry_hash")


def _row_to_entry(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(
        id=int(row["id"]), model=row["model"], alias=row["alias"],
        from_version=row["from_version"], to_version=row["to_version"],
        action=AuditAction(row["action"]), actor=row["actor"], reason=row["reason"],
        gate=None if row["gate"] is None else json.loads(row["gate"]),
        at=datetime.fromisoformat(row["at"]), prev_hash=row["prev_hash"],
        entry_hash=row["entry_hash"],
    )


class SqliteAuditLog(AuditLog):
    """The audit log in the SQLite file ``path`` (created with its folder if missing)."""

    def __init__(self, path: str | Path, timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._timeout_s = timeout_s
        with self._connect() as db:
            db.executescript(_SCHEMA + _append_only_triggers())
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA foreign_keys = ON")
            yield db
        finally:
            db.close()

    def append(self, entry: NewAuditEntry) -> AuditEntry:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                last = db.execute(
                    "SELECT id, entry_hash FROM audit_entries ORDER BY id DESC LIMIT 1"
                ).fetchone()
                stored = AuditEntry(
                    model=entry.model, alias=entry.alias, from_version=entry.from_version,
                    to_version=entry.to_version, action=entry.action, actor=entry.actor,
                    reason=entry.reason, gate=entry.gate,
                    id=1 if last is None else int(last["id"]) + 1, at=utcnow(),
                    prev_hash=GENESIS_HASH if last is None else str(last["entry_hash"]),
                    entry_hash="",
                )
                stored = replace(stored, entry_hash=entry_hash(stored))
                db.execute(
                    f"INSERT INTO audit_entries ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (stored.id, stored.model, stored.alias, stored.from_version,
                     stored.to_version, str(stored.action), stored.actor, stored.reason,
                     canonical_gate(stored.gate), stored.at.isoformat(), stored.prev_hash,
                     stored.entry_hash),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return stored

    def entries(self, model: str | None = None, alias: str | None = None) -> list[AuditEntry]:
        query = f"SELECT {_COLUMNS} FROM audit_entries"
        conditions: list[str] = []
        params: list[str] = []
        if model is not None:
            conditions.append("model = ?")
            params.append(model)
        if alias is not None:
            conditions.append("alias = ?")
            params.append(alias)
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY id", params).fetchall()
        return [_row_to_entry(row) for row in rows]

    def verify_chain(self) -> ChainStatus:
        try:
            entries = self.entries()
        except (ValueError, KeyError) as exc:  # a row edited into something unreadable
            return ChainStatus(False, 0, f"an entry is unreadable: {exc}")
        return verify_entries(entries)

    def record_delivery(self, entry_id: int, status: DeliveryStatus, detail: str = "") -> None:
        if status is DeliveryStatus.PENDING:
            raise ValueError("pending is the absence of a delivery record, not a record")
        with self._connect() as db:
            db.execute(
                "INSERT INTO event_deliveries (entry_id, status, detail, at) VALUES (?,?,?,?)",
                (entry_id, str(status), detail, utcnow().isoformat()),
            )

    def deliveries(self, entry_ids: list[int]) -> dict[int, Delivery]:
        result = {entry_id: Delivery(DeliveryStatus.PENDING) for entry_id in entry_ids}
        if not entry_ids:
            return result
        marks = ",".join("?" * len(entry_ids))
        with self._connect() as db:
            rows = db.execute(
                f"SELECT entry_id, status, detail, at, "
                f"COUNT(*) OVER (PARTITION BY entry_id) AS attempts, "
                f"ROW_NUMBER() OVER (PARTITION BY entry_id ORDER BY seq DESC) AS newest "
                f"FROM event_deliveries WHERE entry_id IN ({marks})", entry_ids,
            ).fetchall()
        for row in rows:
            if row["newest"] == 1:
                result[int(row["entry_id"])] = Delivery(
                    DeliveryStatus(row["status"]), int(row["attempts"]), row["detail"],
                    datetime.fromisoformat(row["at"]))
        return result

    def pending(self, model: str | None = None) -> list[AuditEntry]:
        query = (f"SELECT {_COLUMNS} FROM audit_entries e WHERE NOT EXISTS ("
                 "SELECT 1 FROM event_deliveries d WHERE d.entry_id = e.id "
                 "AND d.status IN ('delivered', 'superseded'))")
        params: list[str] = []
        if model is not None:
            query += " AND model = ?"
            params.append(model)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY id", params).fetchall()
        return [_row_to_entry(row) for row in rows]
