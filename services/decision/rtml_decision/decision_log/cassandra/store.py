"""Cassandra backend: one row per transaction, partitioned by event day and a hash bucket.

Schema (CQL valid on the local 1.2 stand-in and on Cassandra 5)::

    CREATE TABLE decision_log (
        day text, bucket int, transaction_id text,
        customer_id text, event_time timestamp, decided_at timestamp,
        outcome text, score double, model_version text, rule_set_version text,
        arm text, degraded boolean, decision text, inputs text,
        PRIMARY KEY ((day, bucket), transaction_id))

Why this key: backtests read "the last N decisions" or "a time range", so
rows of a day must be reachable without a scan of the whole table — the
partition is the transaction's *event* day. A day is split into
:data:`BUCKETS` partitions by a hash of the transaction id so one busy day
is not one unbounded partition on one replica. The transaction id is the
clustering key, so a rewrite of the same transaction (a replayed Kafka
batch, or a decision re-made while Redis was down) overwrites its row:
the log holds each transaction exactly once. ``decision`` is the full event
as JSON and ``inputs`` the feature/score/request values as JSON, so the
backtest sees exactly what the rules saw.

Constraints of the stand-in (INFRA.md): protocol v1, ``ConsistencyLevel.ONE``,
no ``IF NOT EXISTS`` (``AlreadyExists`` is caught), no paging and no bound
``LIMIT`` (reads format an integer limit in), no driver batches (rows go
through ``execute_concurrent``).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from cassandra import AlreadyExists, ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.policies import ExponentialReconnectionPolicy, RoundRobinPolicy
from cassandra.query import PreparedStatement

from rtml_common.config import CassandraSettings
from rtml_common.events import Decision
from rtml_decision.decision_log.base import DecisionLog, LoggedDecision

BUCKETS = 8
DEFAULT_TABLE = "decision_log"
#: How far back :meth:`CassandraDecisionLog.read` looks for "the newest N" without a range.
DEFAULT_LOOKBACK_DAYS = 30

_COLUMNS = ("day", "bucket", "transaction_id", "customer_id", "event_time", "decided_at",
            "outcome", "score", "model_version", "rule_set_version", "arm", "degraded",
            "decision", "inputs")


def connect(settings: CassandraSettings, timeout_s: float = 5.0) -> tuple[Cluster, Session]:
    """A session with consistency ONE on the configured protocol (v1 locally)."""
    profile = ExecutionProfile(consistency_level=ConsistencyLevel.ONE,
                               load_balancing_policy=RoundRobinPolicy(),
                               request_timeout=max(timeout_s, 10.0))
    cluster = Cluster([h.strip() for h in settings.contact_points.split(",")],
                      port=settings.port, protocol_version=settings.protocol_version,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                      connect_timeout=timeout_s, control_connection_timeout=timeout_s,
                      # No schema metadata: nothing reads it, and Cassandra 1.2's system
                      # tables have none, so building it logs a WARNING per table.
                      schema_metadata_enabled=False,
                      # The default backs off to 10 minutes: a log writer waiting for
                      # Cassandra to come back should notice within seconds.
                      reconnection_policy=ExponentialReconnectionPolicy(0.5, 5.0))
    try:
        session = cluster.connect()
    except Exception:
        cluster.shutdown()
        raise
    return cluster, session


def bucket_of(transaction_id: str) -> int:
    digest = hashlib.blake2b(transaction_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def day_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


class CassandraDecisionLog(DecisionLog):
    """The decision log in ``keyspace.table`` (created, with the keyspace, if missing)."""

    def __init__(self, session: Session, keyspace: str, table: str = DEFAULT_TABLE,
                 cluster: Cluster | None = None, replication_factor: int = 1) -> None:
        self.session = session
        self.cluster = cluster
        self.table = f"{keyspace}.{table}"
        self._create(keyspace, replication_factor)
        #: Prepared inserts by the columns a row has: Cassandra 1.2 refuses a bound
        #: null ("Invalid null value"), so a null column is left out of the insert.
        self._inserts: dict[tuple[str, ...], PreparedStatement] = {}
        # Cassandra 1.2 can't bind LIMIT: it is formatted in (an int) per read.
        self._select = (f"SELECT decision, inputs FROM {self.table} "
                        "WHERE day = %s AND bucket = %s LIMIT {limit}")

    @classmethod
    def from_settings(cls, settings: CassandraSettings,
                      table: str = DEFAULT_TABLE) -> CassandraDecisionLog:
        cluster, session = connect(settings)
        try:
            return cls(session, settings.keyspace, table, cluster=cluster)
        except Exception:
            cluster.shutdown()
            raise

    def _create(self, keyspace: str, replication_factor: int) -> None:
        with contextlib.suppress(AlreadyExists):
            self.session.execute(
                f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', "
                f"'replication_factor': {replication_factor}}}")
        with contextlib.suppress(AlreadyExists):
            self.session.execute(
                f"CREATE TABLE {self.table} (day text, bucket int, transaction_id text, "
                "customer_id text, event_time timestamp, decided_at timestamp, outcome text, "
                "score double, model_version text, rule_set_version text, arm text, "
                "degraded boolean, decision text, inputs text, "
                "PRIMARY KEY ((day, bucket), transaction_id))")

    def _insert(self, columns: tuple[str, ...]) -> PreparedStatement:
        statement = self._inserts.get(columns)
        if statement is None:
            statement = self._inserts[columns] = self.session.prepare(
                f"INSERT INTO {self.table} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' for _ in columns)})")
        return statement

    def write_many(self, rows: Sequence[LoggedDecision]) -> None:
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for row in rows:
            pairs = [(c, v) for c, v in zip(_COLUMNS, self._params(row), strict=True)
                     if v is not None]
            groups.setdefault(tuple(c for c, _ in pairs), []).append(tuple(v for _, v in pairs))
        for columns, params in groups.items():
            results = execute_concurrent_with_args(self.session, self._insert(columns), params,
                                                   concurrency=64, raise_on_first_error=True)
            for ok, outcome in results:
                if not ok:
                    raise outcome if isinstance(outcome, Exception) else RuntimeError(outcome)

    @staticmethod
    def _params(row: LoggedDecision) -> tuple[Any, ...]:
        d = row.decision
        return (day_of(d.event_time), bucket_of(d.transaction_id), d.transaction_id,
                d.customer_id, d.event_time, d.decided_at, str(d.outcome), d.score,
                d.model_version, d.rule_set_version, d.arm, d.degraded,
                d.model_dump_json(), orjson.dumps(row.inputs).decode())

    def read(self, limit: int, since: datetime | None = None,
             until: datetime | None = None) -> list[LoggedDecision]:
        end = until or datetime.now(UTC)
        start = since or end - timedelta(days=DEFAULT_LOOKBACK_DAYS)
        found: list[LoggedDecision] = []
        day = end.astimezone(UTC).date()
        while day >= start.astimezone(UTC).date() and len(found) < limit:
            rows: list[LoggedDecision] = []
            for bucket in range(BUCKETS):
                query = self._select.format(limit=int(limit))
                for raw in self.session.execute(query, (day.isoformat(), bucket)):
                    decision = Decision.model_validate_json(raw.decision)
                    if start <= decision.event_time < end:
                        rows.append(LoggedDecision(decision, orjson.loads(raw.inputs or "{}")))
            rows.sort(key=lambda r: r.decision.decided_at, reverse=True)
            found.extend(rows)
            day -= timedelta(days=1)
        found.sort(key=lambda r: r.decision.decided_at, reverse=True)
        return found[:limit]

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.shutdown()
