"""Replay against a real Kafka-protocol broker (the local Tansu, via the session fixture).

The broker is shared by the whole test session, so each test uses its own
topic names. Records are consumed until the expected count arrives (never
"up to the end offset", which the local broker reports wrongly).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from rtml_common.events import Label, Transaction
from rtml_common.serde import decode
from rtml_localstack.testing import consume
from rtml_simulator import SimulationConfig, read_transactions, simulate, write_dataset
from rtml_simulator.cli import app
from rtml_simulator.pacing import Pace
from rtml_simulator.replay import LABEL, TRANSACTION, ReplayOptions, plan_replay, replay

pytestmark = pytest.mark.integration

CONFIG = SimulationConfig(n_customers=200, n_terminals=400, n_days=20, radius=9.0, seed=5)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(simulate(CONFIG), tmp_path_factory.mktemp("kafka-replay-data"))


def _topics() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"sim-transactions-{suffix}", f"sim-labels-{suffix}"


def test_replay_delivers_every_event_keyed_and_in_order(kafka_broker: Any,
                                                        data_dir: Path) -> None:
    from rtml_common.config import KafkaSettings

    tx_topic, label_topic = _topics()
    options = ReplayOptions(start_day=4, days=6, label_delay=timedelta(days=2),
                            transactions_topic=tx_topic, labels_topic=label_topic)
    settings = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers)
    report = replay(data_dir, options, settings)

    table: pa.Table = read_transactions(data_dir)
    plan = plan_replay(table, options)
    expected_tx = set(plan.rows[plan.kinds == TRANSACTION].tolist())
    expected_labels = set(plan.rows[plan.kinds == LABEL].tolist())
    assert report.topics == {tx_topic: len(expected_tx), label_topic: len(expected_labels)}
    assert report.earlier_labels > 0 and report.withheld_labels > 0

    records = consume(kafka_broker.bootstrap_servers, tx_topic, len(expected_tx), timeout_s=30)
    by_partition: dict[int, list[Transaction]] = defaultdict(list)
    for record in records:
        tx = decode(record.value, Transaction, record.headers)
        assert record.key == tx.customer_id.encode()
        by_partition[record.partition].append(tx)
    received = [int(tx.transaction_id) for txs in by_partition.values() for tx in txs]
    assert len(received) == len(set(received)) and set(received) == expected_tx
    assert len(by_partition) == 4  # created with the platform's partition count
    for txs in by_partition.values():  # within a partition, event time never goes back
        times = [tx.event_time for tx in txs]
        assert times == sorted(times)

    fraud = table.column("tx_fraud").to_numpy()
    labels = [decode(r.value, Label, r.headers) for r in
              consume(kafka_broker.bootstrap_servers, label_topic, len(expected_labels),
                      timeout_s=30)]
    assert {int(label.transaction_id) for label in labels} == expected_labels
    assert all(label.labeled_at - label.transaction_time == timedelta(days=2) for label in labels)
    assert all(label.is_fraud == bool(fraud[int(label.transaction_id)]) for label in labels)
    assert sum(label.is_fraud for label in labels) == int(
        fraud[np.fromiter(expected_labels, dtype=np.int64)].sum())


def test_replay_command_with_accelerated_event_time(kafka_broker: Any, data_dir: Path) -> None:
    tx_topic, label_topic = _topics()
    # 2 event-days at 10 event-days per second: ~0.2 s of pacing.
    result = CliRunner().invoke(app, [
        "replay", "--data", str(data_dir), "--bootstrap-servers", kafka_broker.bootstrap_servers,
        "--days", "2", "--start-day", "1", "--speedup", str(10 * 86_400),
        "--label-delay-days", "0.5", "--transactions-topic", tx_topic,
        "--labels-topic", label_topic, "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    plan = plan_replay(read_transactions(data_dir), ReplayOptions(
        start_day=1, days=2, label_delay=timedelta(days=0.5), pace=Pace.speedup(10 * 86_400)))
    assert f"topic {tx_topic}" in result.output and "events/s" in result.output
    assert f"{plan.n_transactions:,}" in result.output
    records = consume(kafka_broker.bootstrap_servers, tx_topic, plan.n_transactions,
                      timeout_s=30)
    assert len({r.value for r in records}) == plan.n_transactions
    assert len(consume(kafka_broker.bootstrap_servers, label_topic, plan.n_labels,
                       timeout_s=30)) == plan.n_labels
