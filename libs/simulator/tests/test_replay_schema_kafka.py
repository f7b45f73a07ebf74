"""``rtml replay --feature-set payments`` to a real local broker (the session's Tansu).

A small rich simulation is replayed as the payments example's events; what the broker
holds decodes with the schema's generated (lean) decoder, every rich field intact, keyed
by the schema's partition key. A plain data set under that feature set is refused with
the missing field named, and nothing reaches the topics.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rtml_common.serde import header_value
from rtml_features.repo import FEATURE_REPO_ENV, load_repo
from rtml_localstack.testing import consume
from rtml_simulator import SimulationConfig, read_transactions, simulate, write_dataset
from rtml_simulator.cli import app
from rtml_simulator.config import RichMode
from rtml_simulator.replay import ReplayOptions, plan_replay

pytestmark = pytest.mark.integration

PAYMENTS_REPO = Path(__file__).resolve().parents[3] / "examples" / "feature_repos" / "payments"
CONFIG = SimulationConfig(n_customers=150, n_terminals=300, n_days=10, radius=10.0, seed=4,
                          rich=RichMode())
RICH = ("device_id", "ip_address", "merchant_category", "country", "channel")


@pytest.fixture(scope="module")
def rich_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(simulate(CONFIG), tmp_path_factory.mktemp("kafka-rich"))


def test_replay_command_publishes_payment_events(kafka_broker: Any, rich_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from rtml_common.schema_models import event_model, lean_decoder

    monkeypatch.delenv(FEATURE_REPO_ENV, raising=False)  # --feature-repo sets it: restored
    suffix = uuid.uuid4().hex[:8]
    tx_topic, label_topic = f"pay-{suffix}", f"pay-labels-{suffix}"
    result = CliRunner().invoke(app, [
        "replay", "--data", str(rich_dir), "--bootstrap-servers", kafka_broker.bootstrap_servers,
        "--feature-repo", str(PAYMENTS_REPO), "--feature-set", "payments",
        "--start-day", "2", "--days", "3", "--label-delay-days", "1",
        "--transactions-topic", tx_topic, "--labels-topic", label_topic, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "'payment' events of feature set 'payments'" in result.output

    schema = load_repo(PAYMENTS_REPO).schemas["payment"]
    table = read_transactions(rich_dir)
    plan = plan_replay(table, ReplayOptions(start_day=2, days=3, label_delay=timedelta(days=1),
                                            schema=schema))
    records = consume(kafka_broker.bootstrap_servers, tx_topic, plan.n_transactions,
                      timeout_s=30)
    decode = lean_decoder(schema)
    rows = {str(t): i for i, t in enumerate(table.column("transaction_id").to_pylist())}
    columns = {name: table.column(name).to_pylist() for name in RICH}
    seen = set()
    for record in records:
        event = decode(record.value, record.headers)
        assert type(event) is event_model(schema)
        assert header_value(record.headers, "rtml-event-type") == b"Payment"
        assert record.key == event.customer_id.encode()
        row = rows[event.transaction_id]
        assert {n: getattr(event, n) for n in RICH} == {n: columns[n][row] for n in RICH}
        seen.add(row)
    assert seen == set(plan.rows[plan.kinds == 0].tolist())
    scenarios = table.column("tx_fraud_scenario").to_numpy()
    assert {5, 6} & {int(scenarios[r]) for r in seen}  # the rich frauds went out too
    assert len(consume(kafka_broker.bootstrap_servers, label_topic, plan.n_labels,
                       timeout_s=30)) == plan.n_labels


def test_replay_command_refuses_a_plain_data_set(kafka_broker: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FEATURE_REPO_ENV, raising=False)
    data = write_dataset(simulate(replace(CONFIG, rich=None, n_days=3)), tmp_path / "plain")
    topic = f"pay-{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(app, [
        "replay", "--data", str(data), "--bootstrap-servers", kafka_broker.bootstrap_servers,
        "--feature-repo", str(PAYMENTS_REPO), "--feature-set", "payments",
        "--transactions-topic", topic, "--no-create-topics", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "field 'device_id' is required" in result.output
    assert "--rich" in result.output
