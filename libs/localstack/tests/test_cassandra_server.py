"""The local Cassandra 1.2 stand-in, through cassandra-driver (protocol v1)."""

from __future__ import annotations

import uuid

import pytest
from cassandra import AlreadyExists, ConsistencyLevel
from cassandra.query import SimpleStatement

from rtml_localstack.cql import create_keyspace
from rtml_localstack.testing import CassandraServer

pytestmark = pytest.mark.integration


def test_keyspace_rtml_exists_and_creating_it_again_is_harmless(
    cassandra_server: CassandraServer,
) -> None:
    with cassandra_server.session() as session:
        assert create_keyspace(session, "rtml") is False
        rows = session.execute("SELECT keyspace_name FROM system.schema_keyspaces")
        assert "rtml" in {row.keyspace_name for row in rows}


def test_create_table_write_and_read(cassandra_server: CassandraServer) -> None:
    table = f"decisions_{uuid.uuid4().hex[:8]}"
    with cassandra_server.session("rtml") as session:
        # CQL both Cassandra 1.2 and 5 accept: no IF NOT EXISTS.
        session.execute(
            f"CREATE TABLE {table} (customer_id text, event_time timestamp, "
            "transaction_id text, score double, PRIMARY KEY (customer_id, event_time)) "
            "WITH CLUSTERING ORDER BY (event_time DESC)"
        )
        with pytest.raises(AlreadyExists):
            session.execute(f"CREATE TABLE {table} (k text PRIMARY KEY)")
        insert = session.prepare(
            f"INSERT INTO {table} (customer_id, event_time, transaction_id, score) "
            "VALUES (?, ?, ?, ?)"
        )
        insert.consistency_level = ConsistencyLevel.ONE
        import datetime as dt

        base = dt.datetime(2026, 11, 24, 12, 0, 0)
        for i in range(5):
            session.execute(insert, ("c1", base + dt.timedelta(minutes=i), f"t{i}", i / 10))
        select = SimpleStatement(
            f"SELECT transaction_id, score FROM {table} WHERE customer_id = %s LIMIT 3",
            consistency_level=ConsistencyLevel.ONE,
        )
        rows = list(session.execute(select, ("c1",)))
    assert [r.transaction_id for r in rows] == ["t4", "t3", "t2"]
    assert rows[0].score == pytest.approx(0.4)
