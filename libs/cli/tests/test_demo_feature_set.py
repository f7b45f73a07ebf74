"""``rtml demo --feature-repo/--feature-set``: the served set reaches every step and service.

The demo's steps run in its process (replay, audit, feature worker, training,
traffic) and read the served set from ``RTML_FEATURE_REPO``/``RTML_FEATURE_SET``;
``rtml up``'s services get both in their environment. A set whose schema has
more fields than the handbook's is simulated in rich mode in a directory of
its own (the handbook's cached data set is not touched), its models get a
name of their own, and the traffic sends the schema's extra fields from the
data set's columns. No broker needed here: the live run is checked by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from rtml_cli import demo
from rtml_cli.app import app
from rtml_cli.demo_steps.audit import TOPICS, audit_topics
from rtml_cli.demo_steps.context import DemoContext
from rtml_cli.demo_steps.live import _consistency
from rtml_cli.demo_steps.served import RICH_DATA_DIR
from rtml_cli.platform.catalog import PlatformPorts, Secrets, build_catalog, metric_port_names
from rtml_cli.platform.scrape import MetricSample
from rtml_cli.traffic.sender import request_body
from rtml_cli.traffic.source import SourceError, served_extra_fields, source_from_table
from rtml_common.events import Transaction
from rtml_simulator.cli import DEFAULT_DATA_DIR
from rtml_simulator.config import RichMode
from rtml_simulator.io import RICH_TRANSACTIONS_SCHEMA

ROOT = Path(__file__).resolve().parents[3]
PAYMENTS_REPO = ROOT / "examples" / "feature_repos" / "payments"
RICH = ("device_id", "ip_address", "merchant_category", "country", "channel")
FEATURE_VARIABLES = ("RTML_FEATURE_REPO", "RTML_FEATURE_SET")


@pytest.fixture(autouse=True)
def _restore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo exports the served set's variables into its process: undo it after each
    test (setenv records the variable's absence, delenv then clears it for the test)."""
    for name in FEATURE_VARIABLES:
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[DemoContext]:
    """``rtml demo`` up to its steps: the context it would run them with."""
    contexts: list[DemoContext] = []
    monkeypatch.setattr(demo, "run_demo", contexts.append)
    return contexts


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["demo", *args], catch_exceptions=False)


def test_the_flags_choose_the_set_rich_data_of_its_own_and_a_model_name(
        ran: list[DemoContext]) -> None:
    result = _invoke("--feature-repo", str(PAYMENTS_REPO), "--feature-set", "payments")
    assert result.exit_code == 0, result.output
    [ctx] = ran
    settings = ctx.settings
    assert settings.feature_env() == {"RTML_FEATURE_REPO": str(PAYMENTS_REPO.resolve()),
                                      "RTML_FEATURE_SET": "payments"}
    # This process (replay, audit, worker, training, traffic) resolves the set the same way.
    assert os.environ["RTML_FEATURE_SET"] == "payments"
    assert os.environ["RTML_FEATURE_REPO"] == str(PAYMENTS_REPO.resolve())
    assert settings.simulation.rich == RichMode()
    assert settings.data_dir == RICH_DATA_DIR != DEFAULT_DATA_DIR
    assert settings.model_name == "fraud-detector-payments"
    # The audit decodes the payments with the schema's model: extra fields are valid.
    from rtml_common.schema_models import event_model
    from rtml_features.baseline import get_feature_set

    assert audit_topics() == {"transactions": event_model(get_feature_set("payments").schema),
                              "labels": TOPICS["labels"]}


def test_without_flags_the_handbooks_data_and_names_are_kept(ran: list[DemoContext]) -> None:
    assert _invoke().exit_code == 0
    settings = ran[0].settings
    assert settings.feature_env() == {}
    assert settings.simulation.rich is None and settings.data_dir == DEFAULT_DATA_DIR
    assert settings.model_name == "fraud-detector"
    assert "RTML_FEATURE_SET" not in os.environ
    assert audit_topics() is TOPICS


def test_a_given_data_dir_is_kept(ran: list[DemoContext], tmp_path: Path) -> None:
    _invoke("--feature-repo", str(PAYMENTS_REPO), "--feature-set", "payments",
            "--data", str(tmp_path))
    assert ran[0].settings.data_dir == tmp_path and ran[0].settings.simulation.rich


def test_a_set_of_the_handbooks_schema_needs_no_rich_data(ran: list[DemoContext]) -> None:
    _invoke("--feature-set", "baseline")
    settings = ran[0].settings
    assert settings.simulation.rich is None and settings.data_dir == DEFAULT_DATA_DIR
    assert settings.model_name == "fraud-detector-baseline"


@pytest.mark.parametrize("args, message", [
    (("--feature-repo", "no/such/folder"), "is not a folder"),
    (("--feature-repo", str(PAYMENTS_REPO), "--feature-set", "nope"), "nope"),
])
def test_a_bad_choice_is_a_usage_error(ran: list[DemoContext], args: tuple[str, ...],
                                       message: str) -> None:
    result = CliRunner().invoke(app, ["demo", *args])
    assert result.exit_code == 2 and message in result.output and not ran


def test_every_service_gets_the_served_sets_variables() -> None:
    names = metric_port_names()
    ports = PlatformPorts(api=1, registry=2, auditor=3, supervisor_metrics=4,
                          metrics={name: 10 + i for i, name in enumerate(names)})
    env = {"RTML_FEATURE_REPO": "/repo", "RTML_FEATURE_SET": "payments"}
    services = build_catalog(ports, {}, Path("/state"), Secrets("r" * 24, "a" * 24),
                             service_env=env)
    assert len(services) >= 9
    for service in services:
        assert {name: service.env[name] for name in env} == env, service.name
    assert all("RTML_FEATURE_SET" not in s.env for s in build_catalog(
        ports, {}, Path("/state"), Secrets("r" * 24, "a" * 24)))


def test_make_demo_passes_the_variables_through() -> None:
    run = subprocess.run(["make", "-n", "-C", str(ROOT), "demo", f"FEATURE_REPO={PAYMENTS_REPO}",
                          "FEATURE_SET=payments"], capture_output=True, text=True, check=True)
    assert (f"rtml demo --feature-repo {PAYMENTS_REPO} --feature-set payments"
            in run.stdout)
    plain = subprocess.run(["make", "-n", "-C", str(ROOT), "demo"], capture_output=True,
                           text=True, check=True)
    assert "--feature" not in plain.stdout


# -- traffic: the served schema's extra fields ----------------------------------------


def test_the_served_schemas_extra_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    assert served_extra_fields() == ()
    monkeypatch.setenv("RTML_FEATURE_REPO", str(PAYMENTS_REPO))
    monkeypatch.setenv("RTML_FEATURE_SET", "payments")
    assert served_extra_fields() == RICH
    monkeypatch.setenv("RTML_FEATURE_SET", "nope")
    with pytest.raises(SourceError, match="nope"):
        served_extra_fields()


def _rich_table() -> pa.Table:
    origin = int(datetime(2018, 4, 1, tzinfo=UTC).timestamp()) * 1_000_000
    secs = np.array([5, 60, 86_400 + 5], dtype=np.int64)
    return pa.table({
        "transaction_id": np.arange(3, dtype=np.int64),
        "tx_datetime": pa.array(origin + secs * 1_000_000, type=pa.timestamp("us", tz="UTC")),
        "customer_id": np.array([1, 2, 1], dtype=np.int64),
        "terminal_id": np.array([7, 8, 9], dtype=np.int64),
        "tx_amount": np.array([10.0, 20.0, 30.0]),
        "tx_time_seconds": secs,
        "tx_time_days": (secs // 86_400).astype(np.int32),
        "tx_fraud": np.zeros(3, dtype=np.int8),
        "tx_fraud_scenario": np.zeros(3, dtype=np.int8),
        "device_id": ["d1", "d2", "d1"],
        "ip_address": ["10.0.0.1", None, "10.0.0.3"],
        "merchant_category": ["grocery", "fuel", "travel"],
        "country": ["FR", "DE", "FR"],
        "channel": ["web", "pos", "app"],
    }, schema=RICH_TRANSACTIONS_SCHEMA)


def test_a_rich_row_sends_its_fields_and_leaves_out_absent_ones() -> None:
    source = source_from_table(_rich_table(), start_day=0, fields=RICH)
    assert source.extra(0) == {"device_id": "d1", "ip_address": "10.0.0.1",
                               "merchant_category": "grocery", "country": "FR",
                               "channel": "web"}
    assert "ip_address" not in source.extra(1)  # card present: no IP address
    later = source_from_table(_rich_table(), start_day=1, fields=RICH)
    assert later.extra(0)["channel"] == "app"  # rows from the start day on, aligned
    plain = source_from_table(_rich_table(), start_day=0)
    assert plain.extra(0) == {}


def test_the_request_body_carries_the_extra_fields() -> None:
    tx = Transaction(transaction_id="r-1", event_time=datetime(2026, 1, 1, tzinfo=UTC),
                     customer_id="1", terminal_id="7", amount=10.0)
    assert json.loads(request_body(tx, {"channel": "web"})) == {
        **json.loads(request_body(tx)), "channel": "web"}
    assert request_body(tx, {}) == request_body(tx)


def test_a_handbook_data_set_cannot_feed_the_payments_schema(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from rtml_cli.traffic.source import COLUMNS, load_source

    pq.write_table(_rich_table().select(list(COLUMNS)), tmp_path / "transactions.parquet")
    with pytest.raises(SourceError, match="simulate --rich"):
        load_source(tmp_path, 0, RICH)


def test_the_platform_summary_says_the_set_is_not_checked() -> None:
    samples = [MetricSample("rtml_consistency_feature_set_checked",
                            {"feature_set": "payments"}, 0.0)]
    assert "payments not checked" in _consistency(samples)


def test_a_generic_sets_request_time_layout_is_summarised_by_counts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The step's Redis read-back reads prefix logs or latest hashes; a generic set on the
    prefix layout (its request-time layout) gets the worker's counts instead."""
    from types import SimpleNamespace

    from rich.console import Console

    from rtml_cli.demo_steps.features import _section
    from rtml_features.baseline import get_feature_set

    monkeypatch.setenv("RTML_FEATURE_REPO", str(PAYMENTS_REPO))
    payments = get_feature_set("payments")
    run = SimpleNamespace(vectors_published=10, events_applied=20, revisions=1, late_events=0)
    worker = SimpleNamespace(feature_set=payments, computer=SimpleNamespace())
    console = Console(width=200, record=True)
    console.print(_section(run, worker, "redis://unused", "prefix"))
    text = console.export_text()
    assert "payments (32 features, schema 'payment')" in text and "10" in text
