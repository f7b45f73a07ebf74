"""CQL sessions that work on both the local Cassandra 1.2 stand-in and Cassandra 5.

The stand-in speaks only CQL protocol v1 and drops the connection on
``LOCAL_ONE`` (the driver's default consistency), so sessions default to
``ConsistencyLevel.ONE``. Schema statements use the CQL subset both versions
accept; "already exists" is caught instead of using ``IF NOT EXISTS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cassandra.cluster import Cluster, Session


def connect(
    host: str,
    port: int,
    keyspace: str | None = None,
    protocol_version: int = 1,
    timeout_s: float = 5.0,
) -> tuple[Cluster, Session]:
    """A connected ``(cluster, session)``; call ``cluster.shutdown()`` when done."""
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    profile = ExecutionProfile(
        consistency_level=ConsistencyLevel.ONE,
        load_balancing_policy=RoundRobinPolicy(),
        request_timeout=max(timeout_s, 10.0),
    )
    cluster = Cluster(
        [host],
        port=port,
        protocol_version=protocol_version,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=timeout_s,
        control_connection_timeout=timeout_s,
        # No schema metadata: nothing reads it, and Cassandra 1.2's system tables have
        # no column metadata, so building it logs a WARNING per table at every connect.
        schema_metadata_enabled=False,
    )
    try:
        session = cluster.connect(keyspace)
    except Exception:
        cluster.shutdown()
        raise
    return cluster, session


def create_keyspace(session: Session, keyspace: str, replication_factor: int = 1) -> bool:
    """Create ``keyspace`` (SimpleStrategy) unless it exists; True if created."""
    from cassandra import AlreadyExists

    try:
        session.execute(
            f"CREATE KEYSPACE {keyspace} WITH replication = "
            f"{{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}"
        )
    except AlreadyExists:
        return False
    return True
