"""Connecting to Cassandra logs no driver warnings.

The driver builds schema metadata at every connect by default; Cassandra 1.2's
system tables (the local stand-in) have no column metadata, so that printed
seven ``WARNING cassandra.metadata: Building table metadata with no column
meta ...`` lines each time the decision service or the stack connected, which
read as errors. Both connection helpers turn schema metadata off.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from rtml_common.config import CassandraSettings
from rtml_decision.decision_log.cassandra import CassandraDecisionLog
from rtml_localstack import cql

pytestmark = pytest.mark.integration


def driver_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.split(".")[0] == "cassandra"]


def test_the_decision_log_connects_without_driver_warnings(
        cassandra_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    settings = CassandraSettings(contact_points=cassandra_server.host,
                                 port=cassandra_server.port)
    with caplog.at_level(logging.DEBUG, logger="cassandra"):
        log = CassandraDecisionLog.from_settings(settings, table="connect_check")
        assert log.cluster is not None
        log.cluster.shutdown()
    records = driver_records(caplog)
    assert records, "no driver log record captured at all: the check would prove nothing"
    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == []


def test_the_stack_cql_helper_connects_without_driver_warnings(
        cassandra_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="cassandra"):
        cluster, session = cql.connect(cassandra_server.host, cassandra_server.port)
        try:
            assert session.execute("SELECT release_version FROM system.local").one()
        finally:
            cluster.shutdown()
    records = driver_records(caplog)
    assert records, "no driver log record captured at all: the check would prove nothing"
    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == []
