"""The ``simulate`` / ``replay`` commands' option handling (no broker needed)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from rtml_simulator import SimulationConfig, read_manifest
from rtml_simulator.cli import app

runner = CliRunner()


def test_app_has_exactly_the_two_commands() -> None:
    names = sorted(command.name or "" for command in app.registered_commands)
    assert names == ["replay", "simulate"]
    assert app.registered_callback is None


def test_simulate_writes_a_data_set_with_drift_options(tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = runner.invoke(app, [
        "simulate", "--out", str(out), "--customers", "120", "--terminals", "240",
        "--days", "20", "--seed", "4", "--radius", "10", "--start-date", "2019-01-01",
        "--card-testing-from", "10", "--shift-from", "15", "--amount-scale", "1.5",
    ])
    assert result.exit_code == 0, result.output
    assert "scenario 4" in result.output
    config = SimulationConfig.from_dict(read_manifest(out)["config"])
    assert config.n_customers == 120 and config.seed == 4 and config.radius == 10
    assert config.card_testing is not None and config.card_testing.start_day == 10
    assert config.shift is not None and config.shift.amount_scale == 1.5
    table = pq.read_table(out / "transactions.parquet")
    assert str(table.column("tx_datetime")[0].as_py().date()) == "2019-01-01"
    assert 4 in set(table.column("tx_fraud_scenario").to_pylist())


def test_bad_option_combinations_are_refused(tmp_path: Path) -> None:
    shift_alone = runner.invoke(app, ["simulate", "--out", str(tmp_path), "--hour-shift", "2"])
    assert shift_alone.exit_code == 2 and "--shift-from" in shift_alone.output
    two_paces = runner.invoke(app, ["replay", "--data", str(tmp_path), "--rate", "10",
                                    "--max-speed"])
    assert two_paces.exit_code == 2
    bad_date = runner.invoke(app, ["simulate", "--out", str(tmp_path), "--start-date", "2018-13"])
    assert bad_date.exit_code == 2


def test_replay_without_data_says_how_to_make_it(tmp_path: Path) -> None:
    result = runner.invoke(app, ["replay", "--data", str(tmp_path / "none"),
                                 "--bootstrap-servers", "127.0.0.1:1", "--no-progress"])
    assert result.exit_code == 2
    assert "rtml simulate" in result.output
