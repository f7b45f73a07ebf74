"""kill -9 of the shadow auditor mid-stream: no score or label lost or counted twice.

The auditor (``python -m rtml_shadow_auditor``) applies each batch to its
SQLite state in one transaction that also stores the next offset of every
partition; a restart seeks to those offsets, so a batch is either in the
state with its offsets or replayed. Its inserts are idempotent on
(transaction, role, version), so the duplicates an at-least-once scorer
publishes (one in five records is sent twice here, as a crashed scorer
would) are not counted either. The check: the killed-and-restarted state
holds one score per (transaction, role) and one label per transaction, and
its evaluation (AUC, AP, agreement, counts) equals an uninterrupted run's
over the same topics.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rtml_common.config import KafkaSettings
from rtml_common.events import Event, Label, Prediction, ShadowScore
from rtml_common.kafka.producer import EventProducer
from rtml_localstack.ports import free_port
from rtml_shadow_auditor import service
from rtml_shadow_auditor.audit import evaluate_state
from rtml_shadow_auditor.config import Settings
from rtml_shadow_auditor.store import Store

pytestmark = pytest.mark.integration
T0 = datetime(2018, 6, 1, tzinfo=UTC)
WINDOW_S = 30 * 86400


def transaction_events(name: str, i: int) -> list[Event]:
    """Champion score, shadow score and label of transaction ``i`` (deterministic)."""
    rng = np.random.default_rng(i)
    at = T0 + timedelta(seconds=30 * i)
    tx = f"{name}-tx-{i}"
    common = {"transaction_id": tx, "customer_id": f"c{i % 50}", "event_time": at,
              "model_name": name, "scored_at": at}
    return [Prediction(**common, model_version="1", score=float(rng.random()), latency_ms=1.0),
            ShadowScore(**common, model_version="2", score=float(rng.random()), latency_ms=2.0,
                        champion_version="1"),
            Label(transaction_id=tx, customer_id=f"c{i % 50}", transaction_time=at,
                  labeled_at=at + timedelta(hours=6), is_fraud=bool(rng.random() < 0.1))]


def figures(state: Path, name: str) -> dict[str, Any]:
    store = Store(state)
    try:
        evaluation = evaluate_state(store, name, T0, window_s=WINDOW_S,
                                    label_window_s=WINDOW_S, threshold=0.5).to_dict()
        return {"counts": store.counts(), "champion": evaluation["champion"],
                "shadows": evaluation["shadows"]}
    finally:
        store.close()


def test_auditor_kill_9_counts_each_pair_once(
        faults: Any, service_process: Any, fault_report: Any, kafka_broker_factory: Any,
        tmp_path: Path) -> None:
    scale = faults.profile()
    n = scale.records
    name = f"fraud-faults-{uuid.uuid4().hex[:8]}"
    broker = kafka_broker_factory(create_topics=True)
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
    state_dir = tmp_path / "killed"
    auditor = service_process("rtml_shadow_auditor", {
        "RTML_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "RTML_KAFKA_SESSION_TIMEOUT_MS": str(faults.SESSION_TIMEOUT_MS),
        "RTML_SHADOW_AUDITOR_MODEL_NAME": name,
        "RTML_SHADOW_AUDITOR_STATE_DIR": str(state_dir),
        "RTML_SHADOW_AUDITOR_REPORT_DIR": str(state_dir / "reports"),
        "RTML_SHADOW_AUDITOR_EVALUATE_INTERVAL_S": "3600",
        "RTML_SHADOW_AUDITOR_HTTP_PORT": str(free_port()),
    })
    db = state_dir / "state.sqlite"

    def scores_stored() -> int:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                return int(conn.execute("SELECT count(*) FROM scores").fetchone()[0])
        except sqlite3.Error:  # not created yet
            return 0

    producer = EventProducer(kafka)

    def send(i: int) -> None:
        events = transaction_events(name, i)
        for event in events:
            producer.send(event)
        if i % 5 == 0:  # what a scorer crash republishes: the same scores again
            for event in events:
                producer.send(event)

    warm_up = 10
    for i in range(warm_up):
        send(i)
    producer.flush()
    auditor.start()
    faults.wait_until(lambda: scores_stored() >= 2 * warm_up, 120, "the warm-up stored",
                      watch=[auditor])
    paced = faults.PacedProducer(send, producer.flush, n, scale.rate, first=warm_up)
    paced.start()
    recoveries: list[float] = []
    for round_ in range(1, scale.kill_rounds + 1):
        target = 2 * n * round_ // (scale.kill_rounds + 1)
        faults.wait_until(lambda t=target: scores_stored() >= t, 120, f"{target} scores stored",
                          watch=[auditor])
        killed_at = auditor.kill9()
        produced_then = paced.produced
        assert produced_then < n, "the stream ended before the kill: not mid-stream"
        auditor.start()
        caught_up = faults.wait_until(lambda p=produced_then: scores_stored() >= 2 * p, 120,
                                      "the restarted auditor caught up", watch=[auditor])
        recoveries.append(caught_up - killed_at)
    paced.finish()
    producer.close()
    faults.wait_until(lambda: scores_stored() >= 2 * n, 120, "every score stored",
                      watch=[auditor])
    assert auditor.stop() == 0, auditor.tail()

    with sqlite3.connect(db) as conn:
        stored = [row[0] for row in conn.execute(
            "SELECT transaction_id || '/' || role FROM scores")]
        labels = [row[0] for row in conn.execute("SELECT transaction_id FROM labels")]
    ids = [f"{name}-tx-{i}" for i in range(n)]
    pairs = faults.tally([f"{tx}/{role}" for tx in ids for role in ("champion", "shadow")],
                         stored)
    labelled = faults.tally(ids, labels)
    assert (pairs.lost, pairs.duplicated, pairs.unexpected) == (0, 0, 0), pairs
    assert (labelled.lost, labelled.duplicated, labelled.unexpected) == (0, 0, 0), labelled

    # The uninterrupted reference over the same topics, in-process, its own group and state.
    reference = Settings(model_name=name, consumer_group=f"reference-{name}",
                         state_dir=tmp_path / "reference",
                         report_dir=tmp_path / "reference" / "reports",
                         exit_when_idle_s=scale.reference_idle_s,
                         evaluate_interval_s=3600)
    service.run(reference, kafka, serve_http=False, install_signal_handlers=False,
                stop=threading.Event())
    expected = figures(reference.state_db, name)
    assert expected["counts"]["scores"] == 2 * n and expected["counts"]["labels"] == n
    assert figures(db, name) == expected
    fault_report(faults.FaultResult(
        "shadow auditor", "kill -9 mid-stream (+1 in 5 records duplicated)", n, auditor.kills,
        pairs.lost + labelled.lost, pairs.duplicated + labelled.duplicated, recoveries,
        "SQLite state vs. an uninterrupted run: equal counts and evaluation"))
