"""Restarting from the SQLite state counts exactly what an uninterrupted run counts (real broker).

The sharp case: the group's committed offsets are *ahead* of the state (the
state file is an older copy, as after restoring a backup of the state volume).
The auditor must resume from the offsets stored with its state, not the
group's, or the records in between would be lost; and nothing counts twice.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rtml_common.config import KafkaSettings
from rtml_common.events import Label, Prediction, ShadowScore
from rtml_common.kafka.producer import EventProducer
from rtml_localstack.testing import TEST_SESSION_TIMEOUT_MS
from rtml_shadow_auditor import service
from rtml_shadow_auditor.audit import evaluate_state
from rtml_shadow_auditor.config import Settings
from rtml_shadow_auditor.store import Store

pytestmark = pytest.mark.integration
T0 = datetime(2018, 6, 1, tzinfo=UTC)


def events(name: str, start: int, n: int) -> list[Any]:
    rng = np.random.default_rng(start)
    out: list[Any] = []
    for i in range(start, start + n):
        at = T0 + timedelta(minutes=5 * i)
        fraud = bool(rng.random() < 0.1)
        tx = f"{name}-tx-{i}"  # labels are not per model: the shared broker has others' too
        common = {"transaction_id": tx, "customer_id": f"c{i % 40}", "event_time": at,
                  "model_name": name, "scored_at": at}
        out += [Prediction(**common, model_version="1", score=float(rng.random()),
                           latency_ms=1.0),
                ShadowScore(**common, model_version="2", score=float(rng.random()),
                            latency_ms=2.0, champion_version="1"),
                Label(transaction_id=tx, customer_id=f"c{i % 40}", transaction_time=at,
                      labeled_at=at + timedelta(hours=6), is_fraud=fraud)]
    return out


def run_until_idle(settings: Settings, kafka: KafkaSettings) -> service.AuditorRun:
    return service.run(settings, kafka, serve_http=False, install_signal_handlers=False,
                       stop=threading.Event())


def figures(state: Path, name: str) -> dict[str, Any]:
    store = Store(state)
    evaluation = evaluate_state(store, name, T0, window_s=30 * 86400, label_window_s=30 * 86400,
                                threshold=0.5)
    body = {"counts": store.counts(), "shadows": evaluation.to_dict()["shadows"],
            "champion": evaluation.to_dict()["champion"]}
    store.close()
    return body


def test_restart_from_an_older_state_counts_like_an_uninterrupted_run(
        kafka_broker: Any, tmp_path: Path) -> None:
    name = f"fraud-recovery-{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers,
                          session_timeout_ms=TEST_SESSION_TIMEOUT_MS, idempotent_producer=False,
                          commit_interval_s=0.2, batch_size=50)

    def settings(state: str, group: str) -> Settings:
        return Settings(model_name=name, consumer_group=group, state_dir=tmp_path / state,
                        report_dir=tmp_path / state / "reports", exit_when_idle_s=2.0,
                        evaluate_interval_s=3600)

    with EventProducer(kafka) as producer:
        for event in events(name, 0, 300):
            producer.send(event)
    interrupted = settings("interrupted", f"g1-{name}")
    run_until_idle(interrupted, kafka)
    backup = tmp_path / "backup.sqlite"
    shutil.copy(interrupted.state_db, backup)  # the state after the first 300 transactions

    with EventProducer(kafka) as producer:
        for event in events(name, 300, 200):
            producer.send(event)
    run_until_idle(interrupted, kafka)  # the group commits past everything
    # Back to the older state: the group's offsets are now ahead of it.
    for suffix in ("", "-wal", "-shm"):
        Path(str(interrupted.state_db) + suffix).unlink(missing_ok=True)
    shutil.copy(backup, interrupted.state_db)
    again = run_until_idle(interrupted, kafka)
    # Resumed behind the backup's offsets (the group's would have applied nothing).
    assert again.applied >= 600

    uninterrupted = settings("uninterrupted", f"g2-{name}")
    run_until_idle(uninterrupted, kafka)
    expected = figures(uninterrupted.state_db, name)
    assert expected["counts"]["scores"] == 1000 and expected["counts"]["labels"] >= 500
    assert expected["shadows"][0]["matured_labels"] == 500
    assert figures(interrupted.state_db, name) == expected
