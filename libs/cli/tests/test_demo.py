"""``rtml demo``'s steps: data set caching, the broken records, and a whole run.

The integration tests run the real steps against servers of their own on
free ports (never the default ones a developer's stack may hold), with a
small simulated data set, and check real numbers: every replayed record is
read back by the audit consumer, and exactly the three broken records are
dead-lettered, with the expected reasons.
"""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from rich.console import Console

from rtml_cli.demo import STEPS, run_steps
from rtml_cli.demo_steps.context import DemoContext, DemoError, DemoSettings, Step
from rtml_cli.demo_steps.dataset import cached_manifest, ensure_dataset
from rtml_cli.demo_steps.malformed import malformed_records
from rtml_cli.demo_steps.stack import start_stack
from rtml_cli.demo_steps.summary import print_summary, what_next
from rtml_common.events import Transaction
from rtml_common.kafka.admin import ensure_topics
from rtml_common.serde import DecodeError, decode
from rtml_localstack.ports import free_ports
from rtml_localstack.stack import Stack
from rtml_localstack.testing import KafkaBroker
from rtml_simulator.config import SimulationConfig
from rtml_simulator.io import read_transactions

SMALL = SimulationConfig(n_customers=300, n_terminals=600, n_days=12, seed=3)
#: Replayed slice: days 0-9, so the labels of days 0-2 (7-day delay) fall inside it.
DAYS = 10
LABELLED_DAYS = DAYS - 7


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=120), out


def _settings(tmp_path: Path, **overrides: Any) -> DemoSettings:
    base = DemoSettings(state_dir=tmp_path / "stack", data_dir=tmp_path / "data",
                        simulation=SMALL, days=DAYS, audit_idle_s=2.0)
    return dataclasses.replace(base, **overrides)


def _steps(*names: str) -> list[Step]:
    """Steps of the real demo, by function name (so the test runs what the demo runs)."""
    by_function = {step.run.__name__: step for step in STEPS}
    return [by_function[name] for name in names]


# -- without servers -------------------------------------------------------


def test_dataset_is_generated_once_and_regenerated_when_the_config_changes(
    tmp_path: Path,
) -> None:
    console, out = _console()
    first = DemoContext(_settings(tmp_path), console)
    ensure_dataset(first)
    assert first.dataset is not None and not first.dataset.cached
    assert first.dataset.days == SMALL.n_days
    assert first.dataset.transactions == read_transactions(tmp_path / "data").num_rows

    again = DemoContext(_settings(tmp_path), console)
    ensure_dataset(again)
    assert again.dataset is not None and again.dataset.cached
    assert again.dataset.transactions == first.dataset.transactions

    other = SMALL.with_overrides(seed=4)
    assert cached_manifest(tmp_path / "data", other) is None
    changed = DemoContext(_settings(tmp_path, simulation=other), console)
    ensure_dataset(changed)
    assert changed.dataset is not None and not changed.dataset.cached
    assert cached_manifest(tmp_path / "data", other) is not None
    assert "reused (same config)" in out.getvalue()


def test_a_damaged_manifest_means_regenerate(tmp_path: Path) -> None:
    ctx = DemoContext(_settings(tmp_path), _console()[0])
    ensure_dataset(ctx)
    (tmp_path / "data" / "manifest.json").write_text("{not json")
    assert cached_manifest(tmp_path / "data", SMALL) is None


def test_each_broken_record_fails_decoding_with_its_expected_reason() -> None:
    records = malformed_records("abc")
    assert [r.name for r in records] == ["invalid JSON", "negative amount", "naive datetime"]
    for record in records:
        with pytest.raises(DecodeError) as caught:
            decode(record.value, Transaction)
        assert record.expected_reason in str(caught.value)


def test_replaying_past_the_data_fails_clearly(tmp_path: Path) -> None:
    ctx = DemoContext(_settings(tmp_path, start_day=5, days=10), _console()[0])
    ctx.bootstrap_servers = "127.0.0.1:1"
    ensure_dataset(ctx)
    with pytest.raises(DemoError, match="has 12 days"):
        _steps("replay_slice")[0].run(ctx)


def test_what_next_carries_non_default_state_dir_and_broker(tmp_path: Path) -> None:
    ctx = DemoContext(_settings(tmp_path), _console()[0])
    ctx.bootstrap_servers = "127.0.0.1:19092"
    commands = [command for command, _ in what_next(ctx)]
    assert f"rtml stack status --state-dir {tmp_path / 'stack'}" in commands
    assert "rtml dlq show transactions --bootstrap-servers 127.0.0.1:19092" in commands
    assert f"rtml stack down --state-dir {tmp_path / 'stack'}" in commands


# -- against real servers --------------------------------------------------


def _expected_labels(data_dir: Path) -> tuple[int, int]:
    """(labels, fraud labels) a replay of days 0..DAYS-1 publishes: those of days 0-2."""
    table = read_transactions(data_dir, ["tx_time_days", "tx_fraud"])
    labelled = table.filter(pc.less(table["tx_time_days"], LABELLED_DAYS))
    return labelled.num_rows, int(pc.sum(labelled["tx_fraud"]).as_py())


def _run(tmp_path: Path, bootstrap: str) -> tuple[DemoContext, str]:
    console, out = _console()
    ctx = DemoContext(_settings(tmp_path), console)
    ctx.bootstrap_servers = bootstrap  # what the stack step would have found
    run_steps(ctx, _steps("ensure_dataset", "replay_slice", "produce_malformed", "audit"))
    print_summary(ctx)
    return ctx, out.getvalue()


@pytest.mark.integration
def test_demo_steps_audit_what_was_replayed_and_dead_letter_the_broken_records(
    tmp_path: Path, fresh_kafka_broker: KafkaBroker,
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, replication_factor=1)  # as `rtml stack up` does

    ctx, output = _run(tmp_path, bootstrap)

    assert ctx.replay is not None and ctx.audit is not None and ctx.dataset is not None
    labels, fraud_labels = _expected_labels(tmp_path / "data")
    assert ctx.replay.labels == labels > 0
    tx_days = read_transactions(tmp_path / "data", ["tx_time_days"])["tx_time_days"]
    assert ctx.replay.transactions == int(pc.sum(pc.less(tx_days, DAYS)).as_py())
    assert ctx.audit.valid["transactions"] == ctx.replay.transactions
    assert ctx.audit.valid["labels"] == labels
    assert ctx.audit.fraud_labels == fraud_labels > 0
    assert ctx.audit.earlier_records == 0
    assert ctx.audit.dead_letters == ctx.audit.dead_lettered_total == 3
    reasons = [letter.reason for letter in ctx.dead_letters]
    for record, reason in zip(ctx.malformed, reasons, strict=True):
        assert record.expected_reason in reason
    assert {letter.consumer_group for letter in ctx.dead_letters} == {ctx.audit.group_id}
    assert [letter.value for letter in ctx.dead_letters] == [r.value for r in ctx.malformed]
    for text in ("what happened", "transactions.dlq: 3 record(s)", "rtml stack down",
                 f"{ctx.replay.transactions:,}", "greater than or equal to 0"):
        assert text in output

    # A second run on the same broker (stack already up, data set cached)
    # counts only its own records and dead letters.
    second, _ = _run(tmp_path, bootstrap)
    assert second.dataset is not None and second.dataset.cached
    assert second.audit is not None and second.replay is not None
    assert second.audit.valid["transactions"] == second.replay.transactions
    assert second.audit.valid["labels"] == second.replay.labels
    assert second.audit.earlier_records == ctx.replay.events
    assert second.audit.dead_letters == 3
    assert second.audit.dead_lettered_total == 6  # the first run's broken records, again
    assert {letter.consumer_group for letter in second.dead_letters} == {second.audit.group_id}


@pytest.mark.integration
def test_stack_step_starts_components_and_reuses_them_on_a_second_run(tmp_path: Path) -> None:
    kafka_port, redis_port = free_ports(2)
    settings = _settings(tmp_path, components=("kafka", "redis"),
                         ports={"kafka": kafka_port, "redis": redis_port})
    try:
        first = DemoContext(settings, _console()[0])
        start_stack(first)
        assert [(r.name, r.outcome) for r in first.stack_results] == [
            ("kafka", "started"), ("redis", "started")]
        assert first.bootstrap_servers == f"127.0.0.1:{kafka_port}"
        assert first.client_env["RTML_REDIS_URL"].startswith(f"redis://127.0.0.1:{redis_port}")

        second = DemoContext(settings, _console()[0])
        start_stack(second)
        assert [r.outcome for r in second.stack_results] == ["running", "running"]
        assert second.bootstrap_servers == first.bootstrap_servers
    finally:
        Stack(settings.state_dir).down()


@pytest.mark.integration
def test_stack_step_fails_clearly_when_a_port_is_taken(
    tmp_path: Path, fresh_kafka_broker: KafkaBroker,
) -> None:
    settings = _settings(tmp_path, components=("kafka",),
                         ports={"kafka": fresh_kafka_broker.port})
    ctx = DemoContext(settings, _console()[0])
    try:
        with pytest.raises(DemoError, match="could not start: kafka"):
            start_stack(ctx)
    finally:
        Stack(settings.state_dir).down()
    assert "is taken by" in ctx.stack_results[0].detail


@pytest.mark.integration
def test_features_step_computes_a_vector_per_replayed_transaction(
    tmp_path: Path, fresh_kafka_broker: KafkaBroker, redis_server: Any,
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, replication_factor=1)
    console, out = _console()
    ctx = DemoContext(_settings(tmp_path), console)
    ctx.bootstrap_servers = bootstrap
    ctx.client_env = {"RTML_REDIS_URL": redis_server.url}
    run_steps(ctx, _steps("ensure_dataset", "replay_slice", "produce_malformed",
                          "compute_features"))
    print_summary(ctx)
    assert ctx.replay is not None and ctx.features is not None
    assert ctx.features.events_applied == ctx.replay.events  # the 3 broken ones dead-lettered
    assert ctx.features.vectors_published == ctx.replay.transactions + ctx.features.revisions
    assert ctx.features.late_events == 0
    assert "customer_id_nb_tx_30day_window" in out.getvalue()
    assert "request-time, prefix logs" in out.getvalue()
    # Each feature row: the streamed value, then the same value computed from the logs.
    rows = re.findall(r"(\w+_window)\s+(-?[\d.]+)\s+(-?[\d.]+)", out.getvalue())
    assert len(rows) == 12 and all(streamed == served for _, streamed, served in rows), rows
    # Its own group's keys only: the session's Redis is shared with other tests.
    assert redis_server.client().keys("rtml:feature-pipeline:checkpoint:rtml-demo-*") == []


@pytest.mark.integration
def test_demo_trains_registers_and_promotes_through_the_gate(
    tmp_path: Path, fresh_kafka_broker: KafkaBroker, mlflow_server: Any,
) -> None:
    """The train and promote steps against real MLflow + Kafka, with the real registry service."""
    from datetime import timedelta

    import orjson

    from rtml_localstack.testing import consume
    from rtml_models.registry.mlflow import MlflowRegistry

    data = SimulationConfig(n_customers=400, n_terminals=800, n_days=30, seed=5)
    name = f"demo-{tmp_path.name}"
    settings = _settings(tmp_path, simulation=data, model_name=name,
                         train_start=data.start_date + timedelta(days=8))
    console, out = _console()
    ctx = DemoContext(settings, console)
    ctx.bootstrap_servers = fresh_kafka_broker.bootstrap_servers
    ctx.client_env = {"RTML_KAFKA_BOOTSTRAP_SERVERS": fresh_kafka_broker.bootstrap_servers,
                      "RTML_MLFLOW_TRACKING_URI": mlflow_server.tracking_uri}
    ensure_topics(fresh_kafka_broker.bootstrap_servers, ["model-events"], replication_factor=1)
    run_steps(ctx, _steps("ensure_dataset", "train_models", "promote_models"))

    assert [r.config.model for r in ctx.trained] == ["xgboost", "river"]
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    versions = {r.config.model: r.model_version.version for r in ctx.trained}
    assert registry.aliases(name) == {"champion": versions["xgboost"],
                                                  "challenger": versions["river"]}
    events = consume(fresh_kafka_broker.bootstrap_servers, "model-events", 2, timeout_s=30)
    assert sorted(orjson.loads(e.value or b"{}")["alias"] for e in events) == [
        "challenger", "champion"]
    print_summary(ctx)
    text = out.getvalue()
    assert "gate passed" in text and "latency" in text
