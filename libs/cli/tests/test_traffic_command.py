"""The command line's refusals: bad options, an unusable data set, an absent API."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rtml_cli.traffic.command import app, format_summary
from rtml_localstack.ports import free_port
from rtml_simulator import SimulationConfig, simulate, write_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = SimulationConfig(n_customers=20, n_terminals=40, n_days=3, seed=11)
    return write_dataset(simulate(config), tmp_path_factory.mktemp("traffic-data"))


def test_invalid_options_name_the_option_and_its_variable(data_dir: Path) -> None:
    result = runner.invoke(app, ["--rate", "0", "--data", str(data_dir)])
    assert result.exit_code == 2
    assert "--rate / RTML_TRAFFIC_RATE: Input should be greater than 0" in result.output
    result = runner.invoke(app, ["--api-url", "127.0.0.1:8080"])
    assert result.exit_code == 2 and "--api-url" in result.output and "http://" in result.output
    result = runner.invoke(app, ["--run-id", "bad id!"])
    assert result.exit_code == 2 and "--run-id" in result.output


def test_environment_settings_are_read_and_typos_refused(data_dir: Path) -> None:
    result = runner.invoke(app, ["--data", str(data_dir)], env={"RTML_TRAFFIC_SPEED": "-1"})
    assert result.exit_code == 2 and "RTML_TRAFFIC_SPEED" in result.output
    result = runner.invoke(app, [], env={"RTML_TRAFFIC_RAET": "5"})
    assert result.exit_code == 2 and "unknown variable(s) RTML_TRAFFIC_RAET" in result.output


def test_a_start_day_past_the_data_is_refused(data_dir: Path) -> None:
    result = runner.invoke(app, ["--data", str(data_dir), "--start-day", "3"])
    assert result.exit_code == 2
    assert "--start-day 3 is past the data" in result.output and "days 0 to 2" in result.output
    result = runner.invoke(app, ["--data", str(data_dir / "missing")])
    assert result.exit_code == 2 and "rtml simulate --out" in result.output


def test_an_absent_api_is_waited_for_then_named(data_dir: Path) -> None:
    port = free_port()
    started = time.monotonic()
    result = runner.invoke(app, ["--data", str(data_dir), "--api-url", f"http://127.0.0.1:{port}",
                                 "--connect-wait-s", "1"])
    assert result.exit_code == 1
    assert f"the decision API at http://127.0.0.1:{port} did not answer within 1 s" in (
        result.output)
    assert "ConnectError" in result.output
    assert time.monotonic() - started < 30  # bounded: it gave up


def test_a_run_older_than_the_apis_age_limit_is_refused(data_dir: Path) -> None:
    result = runner.invoke(app, ["--data", str(data_dir), "--speed", "3600", "--duration", "60",
                                 "--max-event-age-s", "3600"])
    assert result.exit_code == 1
    assert "beyond the API's max event age" in result.output
    assert "--duration of at most 1 s" in result.output


def test_the_summary_reads_every_counter() -> None:
    summary = {
        "run_id": "r", "stopped_by": "duration", "seconds": 10.0, "sent": 500,
        "achieved_rate": 50.0, "rate": 50.0, "idle_slots": 0, "skipped_transactions": 3000,
        "behind_schedule": 2, "max_lag_ms": 120.0, "unsent_at_stop": 1, "ok": 497,
        "outcomes": {"approve": 480, "review": 12, "decline": 5}, "degraded": 1,
        "status_4xx": 1, "status_5xx": 1, "errors": {"timeout": 1},
        "latency_ms": {"p50": 2.0, "p99": 9.5, "max": 20.0},
        "labels": {"produced": 300, "topic": "labels", "pending": 197, "flushed_pending": 0,
                   "failed": 0},
        "event_time": {"first": "a", "last": "b"},
    }
    text = format_summary(summary)
    for part in ("sent      500 (50.0/s of 50 asked", "behind    2 sends",
                 "1 slot(s) still waiting", "review 12",
                 "4xx 1, 5xx 1; errors timeout 1", "p99 9.5 ms", "300 produced", "197 pending"):
        assert part in text
