"""kill -9 of the decision log writer mid-stream: every decision in Cassandra exactly once.

The writer (``python -m rtml_decision.log_writer``) copies the ``decisions``
topic into the decision log and commits its offsets only after Cassandra
accepted the batch; rows are keyed by transaction id. Killed between a write
and its commit, the restarted writer rewrites the uncommitted tail: the same
primary keys, so the same rows. The check reads the table back: one row per
transaction id sent, none missing, none extra, and each row is the decision
that was sent (not a stale or mixed copy).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rtml_common.config import KafkaSettings
from rtml_common.events import Decision, FiredRule, Outcome
from rtml_common.kafka.producer import EventProducer
from rtml_decision.decision_log.cassandra.store import BUCKETS, DEFAULT_TABLE, day_of

pytestmark = pytest.mark.integration

DAY = datetime(2026, 3, 1, tzinfo=UTC)


def decision(run: str, i: int) -> Decision:
    at = DAY + timedelta(seconds=i)
    outcome = (Outcome.APPROVE, Outcome.REVIEW, Outcome.DECLINE)[i % 3]
    return Decision(transaction_id=f"{run}-{i}", customer_id=f"c{i % 97}", event_time=at,
                    outcome=outcome, score=(i % 100) / 100, model_name="fraud",
                    model_version="1", rule_set_version="1",
                    fired_rules=[FiredRule(rule="r", reason_code="R", outcome=outcome)],
                    latency_ms=1.0, decided_at=at, inputs={"amount": float(i)})


def test_log_writer_kill_9_writes_each_decision_once(
        faults: Any, service_process: Any, fault_report: Any, kafka_broker_factory: Any,
        cassandra_server: Any) -> None:
    scale = faults.profile()
    n = scale.records
    run = f"lw{uuid.uuid4().hex[:8]}"
    keyspace = f"faults_{run}"
    broker = kafka_broker_factory(create_topics=True)
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
    writer = service_process("rtml_decision.log_writer", {
        "RTML_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "RTML_KAFKA_SESSION_TIMEOUT_MS": str(faults.SESSION_TIMEOUT_MS),
        "RTML_CASSANDRA_CONTACT_POINTS": cassandra_server.host,
        "RTML_CASSANDRA_PORT": str(cassandra_server.port),
        "RTML_CASSANDRA_KEYSPACE": keyspace,
    })
    sent = {f"{run}-{i}": decision(run, i) for i in range(n)}
    producer = EventProducer(kafka)
    warm_up = 10  # produced before the paced part, so the writer has joined when it starts
    paced = faults.PacedProducer(lambda i: producer.send(sent[f"{run}-{i}"]), producer.flush,
                                 n, scale.rate, first=warm_up)

    with cassandra_server.session() as session:
        table = f"{keyspace}.{DEFAULT_TABLE}"

        def rows() -> list[Any]:
            try:
                return [r for b in range(BUCKETS) for r in session.execute(
                    f"SELECT transaction_id, decision FROM {table} "
                    f"WHERE day = %s AND bucket = %s LIMIT {10 * n}", (day_of(DAY), b))]
            except Exception:  # the writer has not created the table yet
                return []

        writer.start()
        for i in range(warm_up):
            producer.send(sent[f"{run}-{i}"])
        producer.flush()
        faults.wait_until(lambda: len(rows()) >= warm_up, 120, "the warm-up logged",
                          watch=[writer])
        paced.start()
        recoveries: list[float] = []
        for round_ in range(1, scale.kill_rounds + 1):
            # Kill once the writer has visibly written part of this round's share.
            target = n * round_ // (scale.kill_rounds + 1)
            faults.wait_until(lambda t=target: len(rows()) >= t, 120,
                              f"{target} decisions logged", watch=[writer])
            killed_at = writer.kill9()
            produced_then = paced.produced
            assert produced_then < n, "the stream ended before the kill: not mid-stream"
            writer.start()
            caught_up = faults.wait_until(lambda p=produced_then: len(rows()) >= p, 120,
                                          f"{produced_then} decisions logged after restart",
                                          watch=[writer])
            recoveries.append(caught_up - killed_at)
        paced.finish()
        faults.wait_until(lambda: len(rows()) >= n, 120, f"all {n} decisions logged",
                          watch=[writer])
        assert writer.stop() == 0, writer.tail()
        logged = rows()
    producer.close()

    result = faults.tally(sent, [r.transaction_id for r in logged])
    assert (result.lost, result.duplicated, result.unexpected) == (0, 0, 0), result
    for row in logged:  # each row is the decision sent for that id, whole
        assert Decision.model_validate_json(row.decision) == sent[row.transaction_id]
    fault_report(faults.FaultResult(
        "decision log writer", "kill -9 mid-stream", n, writer.kills, result.lost,
        result.duplicated, recoveries, "rows read back from Cassandra by transaction id"))
