"""The auditor's durable state: one SQLite file with scores, labels, offsets and decisions.

Why SQLite and why the offsets live in it: the join waits days for labels, so
its state must survive restarts, and a restart must neither lose nor double
count a record. Each consumed batch is applied in **one SQLite transaction
that also stores the next offset of every partition it covers**; on start the
consumer seeks to those stored offsets (not the group's committed ones). A
crash before the transaction commits replays the batch onto the old state; a
crash after it resumes right behind it. Inserts are idempotent anyway
(``INSERT OR IGNORE`` on ``(transaction_id, role, model_version)``; a label
keeps its newest ``labeled_at``), so an at-least-once producer's duplicates
are not counted twice either.

Bounded (see :meth:`Store.prune`): scores and labels of transactions older
than ``state_horizon_s`` before the newest event time are deleted, and beyond
``max_rows`` score rows the oldest go first.

Tables:

* ``scores`` — one row per (transaction, role, version): champion predictions
  and shadow scores, with event time, customer, latency and (shadows) the
  champion version live when the shadow scored.
* ``labels`` — one row per transaction: is_fraud, labeled_at, transaction time.
* ``offsets`` — next offset per consumed (topic, partition).
* ``clock`` — watermarks (newest score event time, newest labeled_at) and the
  current champion version, kept with the data they describe.
* ``counters`` — totals that are not per transaction (dead letters, records of
  other models).
* ``verdicts`` — latest verdict per shadow version (JSON).
* ``recommendations`` — graduations: pending approval, applied, refused, failed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    transaction_id TEXT NOT NULL,
    role TEXT NOT NULL,
    model_version TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    event_time_us INTEGER NOT NULL,
    score REAL NOT NULL,
    latency_ms REAL NOT NULL,
    champion_version TEXT,
    PRIMARY KEY (transaction_id, role, model_version)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS scores_by_time ON scores (event_time_us);
CREATE INDEX IF NOT EXISTS scores_by_version ON scores (role, model_version, event_time_us);
CREATE TABLE IF NOT EXISTS labels (
    transaction_id TEXT PRIMARY KEY,
    is_fraud INTEGER NOT NULL,
    labeled_at_us INTEGER NOT NULL,
    transaction_time_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS labels_by_time ON labels (transaction_time_us);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS clock (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS verdicts (
    model_version TEXT PRIMARY KEY,
    evaluated_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS recommendations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    champion_version TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    summary TEXT NOT NULL,
    report_path TEXT,
    decided_by TEXT,
    decided_at TEXT,
    detail TEXT NOT NULL DEFAULT '',
    UNIQUE (model_name, model_version, champion_version)
);
"""

CHAMPION = "champion"
SHADOW = "shadow"

#: Clock entries.
SCORE_WATERMARK = "score_watermark_us"
LABEL_WATERMARK = "label_watermark_us"
CHAMPION_VERSION = "champion_version"
CHAMPION_VERSION_AT = "champion_version_at_us"


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch (UTC), the state's time unit."""
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


@dataclass(frozen=True, slots=True)
class ScoreRow:
    """A champion prediction or a shadow score, as the join keeps it."""

    transaction_id: str
    role: str
    model_version: str
    customer_id: str
    event_time_us: int
    score: float
    latency_ms: float
    champion_version: str | None = None


@dataclass(frozen=True, slots=True)
class LabelRow:
    transaction_id: str
    is_fraud: bool
    labeled_at_us: int
    transaction_time_us: int


@dataclass(frozen=True)
class Batch:
    """What one consumed batch changes; applied atomically by :meth:`Store.apply`."""

    scores: list[ScoreRow]
    labels: list[LabelRow]
    #: Next offset per (topic, partition) the batch covers.
    offsets: dict[tuple[str, int], int]
    #: Counter increments (e.g. records of other models).
    counters: dict[str, int]


@dataclass(frozen=True)
class Recommendation:
    """A graduation: awaiting approval, applied, refused by the registry, or failed."""

    id: int
    model_name: str
    model_version: str
    champion_version: str
    created_at: str
    status: str
    summary: str
    report_path: str | None
    decided_by: str | None
    decided_at: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


PENDING, APPLIED, REFUSED, FAILED = "pending", "applied", "refused", "failed"


class Store:
    """The SQLite state; one connection per thread (WAL: readers don't block the writer)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.conn.executescript(SCHEMA)  # idempotent; executescript manages its own transaction

    # -- connections --------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed batch (and its offsets) survives a power cut, not just a crash.
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (rollback on error) on this thread's connection."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- the join -------------------------------------------------------------

    def apply(self, batch: Batch) -> None:
        """Apply one batch and record its offsets, atomically."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.transaction_id, r.role, r.model_version, r.customer_id, r.event_time_us,
                  r.score, r.latency_ms, r.champion_version) for r in batch.scores])
            # A corrected label (newer labeled_at) replaces the old one; a replayed one is a no-op.
            conn.executemany(
                "INSERT INTO labels VALUES (?, ?, ?, ?) ON CONFLICT (transaction_id) DO UPDATE "
                "SET is_fraud = excluded.is_fraud, labeled_at_us = excluded.labeled_at_us "
                "WHERE excluded.labeled_at_us > labels.labeled_at_us",
                [(r.transaction_id, int(r.is_fraud), r.labeled_at_us, r.transaction_time_us)
                 for r in batch.labels])
            champions = [r for r in batch.scores if r.role == CHAMPION]
            if batch.scores:
                self._advance(conn, SCORE_WATERMARK, max(r.event_time_us for r in batch.scores))
            if batch.labels:
                self._advance(conn, LABEL_WATERMARK, max(r.labeled_at_us for r in batch.labels))
            if champions:
                newest = max(champions, key=lambda r: r.event_time_us)
                at = self._clock(conn, CHAMPION_VERSION_AT)
                if at is None or newest.event_time_us >= int(at):
                    self._set_clock(conn, CHAMPION_VERSION, newest.model_version)
                    self._set_clock(conn, CHAMPION_VERSION_AT, str(newest.event_time_us))
            self._add_counters(conn, batch.counters)
            self._save_offsets(conn, batch.offsets)

    def advance_offsets(self, offsets: dict[tuple[str, int], int],
                        counters: dict[str, int] | None = None) -> None:
        """Move stored offsets forward only (records the handler never saw: dead letters)."""
        with self.transaction() as conn:
            self._save_offsets(conn, offsets)
            self._add_counters(conn, counters or {})

    @staticmethod
    def _save_offsets(conn: sqlite3.Connection, offsets: dict[tuple[str, int], int]) -> None:
        conn.executemany(
            "INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT (topic, partition) DO UPDATE "
            "SET next_offset = excluded.next_offset WHERE excluded.next_offset > next_offset",
            [(topic, partition, offset) for (topic, partition), offset in offsets.items()])

    @staticmethod
    def _add_counters(conn: sqlite3.Connection, counters: dict[str, int]) -> None:
        conn.executemany(
            "INSERT INTO counters VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
            "SET value = value + excluded.value",
            [(name, n) for name, n in counters.items() if n])

    @staticmethod
    def _clock(conn: sqlite3.Connection, name: str) -> str | None:
        row = conn.execute("SELECT value FROM clock WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _set_clock(conn: sqlite3.Connection, name: str, value: str) -> None:
        conn.execute("INSERT INTO clock VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                     "SET value = excluded.value", (name, value))

    def _advance(self, conn: sqlite3.Connection, name: str, us: int) -> None:
        current = self._clock(conn, name)
        if current is None or us > int(current):
            self._set_clock(conn, name, str(us))

    # -- reads ----------------------------------------------------------------

    def offset(self, topic: str, partition: int) -> int | None:
        """Where to resume (topic, partition); None = never consumed (the group decides)."""
        row = self.conn.execute("SELECT next_offset FROM offsets WHERE topic = ? AND "
                                "partition = ?", (topic, partition)).fetchone()
        return None if row is None else int(row[0])

    def offsets(self) -> dict[tuple[str, int], int]:
        return {(str(t), int(p)): int(o) for t, p, o in
                self.conn.execute("SELECT topic, partition, next_offset FROM offsets")}

    def clock(self, name: str) -> str | None:
        return self._clock(self.conn, name)

    def watermark_us(self, name: str) -> int | None:
        value = self.clock(name)
        return None if value is None else int(value)

    def counters(self) -> dict[str, int]:
        return {str(n): int(v) for n, v in self.conn.execute("SELECT name, value FROM counters")}

    def counts(self) -> dict[str, int]:
        """Row counts (for the health endpoint, logs and tests)."""
        conn = self.conn
        return {
            "scores": int(conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0]),
            "labels": int(conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]),
        }

    def shadow_versions(self, since_us: int) -> list[str]:
        """Shadow versions that scored a transaction at or after ``since_us``."""
        rows = self.conn.execute(
            "SELECT DISTINCT model_version FROM scores WHERE role = ? AND event_time_us >= ?",
            (SHADOW, since_us)).fetchall()
        return sorted((str(r[0]) for r in rows), key=_version_key)

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, tuple(params)).fetchall()

    # -- bounds -----------------------------------------------------------------

    def prune(self, horizon_s: float, max_rows: int) -> int:
        """Delete transactions older than ``horizon_s`` (event time) and cap the score rows.

        Returns the score rows deleted. Offsets are untouched: pruned rows are
        outside every window, so nothing needs them again.
        """
        newest = self.watermark_us(SCORE_WATERMARK)
        if newest is None:
            return 0
        cutoff = newest - int(horizon_s * 1_000_000)
        with self.transaction() as conn:
            deleted = conn.execute("DELETE FROM scores WHERE event_time_us < ?",
                                   (cutoff,)).rowcount
            conn.execute("DELETE FROM labels WHERE transaction_time_us < ?", (cutoff,))
            excess = int(conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0]) - max_rows
            if excess > 0:
                (oldest_kept,) = conn.execute(
                    "SELECT event_time_us FROM scores ORDER BY event_time_us LIMIT 1 OFFSET ?",
                    (excess,)).fetchone()
                deleted += conn.execute("DELETE FROM scores WHERE event_time_us < ?",
                                        (oldest_kept,)).rowcount
                conn.execute("DELETE FROM labels WHERE transaction_time_us < ?", (oldest_kept,))
        return int(deleted)

    # -- decisions ---------------------------------------------------------------

    def save_verdict(self, model_version: str, evaluated_at: str, body: dict[str, Any]) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO verdicts VALUES (?, ?, ?) ON CONFLICT (model_version) DO "
                         "UPDATE SET evaluated_at = excluded.evaluated_at, body = excluded.body",
                         (model_version, evaluated_at, json.dumps(body, allow_nan=False)))

    def verdicts(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT body FROM verdicts").fetchall()
        found = [json.loads(row[0]) for row in rows]
        return sorted(found, key=lambda v: _version_key(str(v.get("model_version", ""))))

    def add_recommendation(self, model_name: str, model_version: str, champion_version: str,
                           summary: str, report_path: str | None) -> Recommendation | None:
        """A new pending recommendation; None if this pair was already recommended."""
        now = datetime.now(UTC).isoformat()
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO recommendations (model_name, model_version, "
                "champion_version, created_at, status, summary, report_path) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (model_name, model_version, champion_version, now, PENDING, summary, report_path))
            if cursor.rowcount == 0:
                return None
            rec_id = cursor.lastrowid
        return self.recommendation(int(rec_id or 0))

    def recommendation(self, rec_id: int) -> Recommendation | None:
        if not 0 < rec_id <= MAX_ROW_ID:  # SQLite would raise OverflowError; no such row
            return None
        row = self.conn.execute(f"SELECT {_REC_COLUMNS} FROM recommendations WHERE id = ?",
                                (rec_id,)).fetchone()
        return None if row is None else Recommendation(*row)

    def recommendations(self, model_name: str | None = None) -> list[Recommendation]:
        sql = f"SELECT {_REC_COLUMNS} FROM recommendations"
        params: tuple[Any, ...] = ()
        if model_name is not None:
            sql += " WHERE model_name = ?"
            params = (model_name,)
        return [Recommendation(*row) for row in self.conn.execute(sql + " ORDER BY id", params)]

    def recommended(self, model_name: str, model_version: str, champion_version: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM recommendations WHERE model_name = ? AND "
                                "model_version = ? AND champion_version = ?",
                                (model_name, model_version, champion_version)).fetchone()
        return row is not None

    def claim(self, rec_id: int, allowed: tuple[str, ...], actor: str) -> Recommendation | None:
        """Mark a recommendation as being decided by ``actor`` if its status is in ``allowed``.

        Atomic, so two concurrent approvals cannot both promote.
        """
        now = datetime.now(UTC).isoformat()
        marks = ",".join("?" for _ in allowed)
        with self.transaction() as conn:
            cursor = conn.execute(
                f"UPDATE recommendations SET status = 'applying', decided_by = ?, decided_at = ? "
                f"WHERE id = ? AND status IN ({marks})", (actor, now, rec_id, *allowed))
            claimed = cursor.rowcount == 1
        return self.recommendation(rec_id) if claimed else None

    def finish(self, rec_id: int, status: str, detail: str) -> Recommendation | None:
        with self.transaction() as conn:
            conn.execute("UPDATE recommendations SET status = ?, detail = ? WHERE id = ?",
                         (status, detail[:4000], rec_id))
        return self.recommendation(rec_id)


#: Largest id SQLite can store (a signed 64-bit integer).
MAX_ROW_ID = 2**63 - 1

_REC_COLUMNS = ("id, model_name, model_version, champion_version, created_at, status, summary, "
                "report_path, decided_by, decided_at, detail")


def _version_key(version: str) -> tuple[int, str]:
    """Numeric versions in numeric order ("10" after "9")."""
    return (int(version), "") if version.isdigit() else (1 << 62, version)
