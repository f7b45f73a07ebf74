"""Cassandra down, then back: decisions keep being answered and none is lost or duplicated.

Uses a Cassandra server of its own (the session one must not be stopped)
and the real Kafka broker; the writer runs inside the service as deployed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from rtml_common.config import CassandraSettings, KafkaSettings, MlflowSettings, RedisSettings
from rtml_decision.config import Settings
from rtml_decision.decision_log.cassandra import CassandraDecisionLog
from rtml_decision.wiring import build_service
from rtml_localstack.environment import is_developer_setting
from rtml_localstack.testing import CassandraServer

pytestmark = pytest.mark.integration

RULES = """
name: log-test
version: "1"
rules:
  - {name: big_amount, when: "amount >= 1000", outcome: review, reason: LARGE_AMOUNT}
"""


@pytest.fixture
def own_cassandra(tmp_path: Path) -> Iterator[CassandraServer]:
    server = CassandraServer.start_new(tmp_path / "cassandra")
    try:
        yield server
    finally:
        server.close()


def test_cassandra_outage_loses_and_duplicates_nothing(
        own_cassandra: CassandraServer, kafka_broker: Any, redis_server: Any,
        mlflow_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in [n for n in os.environ if is_developer_setting(n)]:
        monkeypatch.delenv(name)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    table = f"outage_{uuid.uuid4().hex[:8]}"
    cassandra = CassandraSettings(contact_points=own_cassandra.host, port=own_cassandra.port)
    service = build_service(
        Settings(model_name=f"none-{uuid.uuid4().hex[:6]}", rules_path=rules,
                 fallback_rules_path=rules, admin_api_key=SecretStr("k" * 20)),
        KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers),
        RedisSettings(url=redis_server.url),
        MlflowSettings(tracking_uri=mlflow_server.tracking_uri),
        cassandra, watch_models=False, log_table=table, log_group=f"w-{uuid.uuid4().hex[:8]}")
    ids = [f"tx-{uuid.uuid4().hex[:10]}" for _ in range(6)]

    def post(transaction_id: str, client: TestClient) -> None:
        response = client.post("/v1/decisions", json={
            "transaction_id": transaction_id, "event_time": "2026-01-01T12:00:00Z",
            "customer_id": "c-outage", "amount": 10.0})
        assert response.status_code == 200, response.text

    with TestClient(service.app()) as client:
        _wait(lambda: service.writer is not None, 60)
        post(ids[0], client)
        _wait(lambda: service.writer is not None and service.writer.written >= 1, 60,
              lambda: (service.writer.loop.stats, service.writer.failed_attempts))

        own_cassandra.stop()
        for transaction_id in ids[1:]:
            post(transaction_id, client)  # answered although the log is down
        assert service.writer is not None
        _wait(lambda: service.writer is not None and service.writer.failed_attempts >= 1, 60)
        own_cassandra.start()
        log = CassandraDecisionLog.from_settings(cassandra, table)
        try:
            # Other tests' decisions share the topic: wait for *ours*, not for a count.
            def ours() -> list[Any]:
                rows = log.read(limit=1000, since=datetime(2026, 1, 1, tzinfo=UTC),
                                until=datetime(2026, 1, 2, tzinfo=UTC))
                return [r for r in rows if r.decision.transaction_id in ids]

            _wait(lambda: len(ours()) >= len(ids), 90, lambda: len(ours()))
            rows = ours()
        finally:
            log.close()
    logged = sorted(r.decision.transaction_id for r in rows)
    assert logged == sorted(ids)  # each exactly once


def _wait(condition: Any, timeout_s: float, describe: Any = None) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met in time: {describe() if describe else ''}")
        time.sleep(0.2)
