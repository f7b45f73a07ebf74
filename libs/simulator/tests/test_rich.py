"""Rich mode: payment context fields, scenarios 5 and 6, and the plain run left untouched."""

from __future__ import annotations

import doctest
import hashlib
import importlib
import sys
import types
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rtml_simulator import RichMode, Simulation, SimulationConfig, read_manifest, simulate
from rtml_simulator.cli import app
from rtml_simulator.frames import RICH_HISTORY_COLUMNS, load_dataset
from rtml_simulator.io import (
    RICH_TRANSACTIONS_SCHEMA,
    TRANSACTIONS_FILE,
    TRANSACTIONS_SCHEMA,
    write_dataset,
)
from rtml_simulator.rich import CHANNELS, COUNTRIES, MERCHANT_CATEGORIES, reader_id
from rtml_simulator.rich_fraud import SCENARIO_ACCOUNT_TAKEOVER, SCENARIO_DEVICE_TESTING

PAYMENTS_REPO = Path(__file__).resolve().parents[3] / "examples" / "feature_repos" / "payments"
#: The generator tests' small run: the default terminal density, 60 days.
PLAIN = SimulationConfig(n_customers=600, n_terminals=1_200, n_days=60,
                         radius=5.0 * (10_000 / 1_200) ** 0.5, seed=11)
RICH = PLAIN.with_overrides(rich=RichMode())
#: Digest of PLAIN's columns as generated before rich mode existed.
PLAIN_DIGEST = "7925841a5465b8576971de2c33a321e9e856ec80f3af3d9535a41fed4f87c95a"
COLUMNS = ("time_seconds", "customer_id", "terminal_id", "amount", "fraud", "scenario")


def _payments_schema() -> Any:
    """The payments example's schema module (a feature repo is imported as one package)."""
    if "repo_rich_payments" not in sys.modules:
        package = types.ModuleType("repo_rich_payments")
        package.__path__ = [str(PAYMENTS_REPO)]
        sys.modules["repo_rich_payments"] = package
    return importlib.import_module("repo_rich_payments.schema")


@pytest.fixture(scope="module")
def rich_run() -> Simulation:
    return simulate(RICH)


@pytest.fixture(scope="module")
def frame(rich_run: Simulation) -> pd.DataFrame:
    """The rich run as one frame, with each row's customer-day and session columns."""
    tx, rich = rich_run.transactions, rich_run.rich
    assert rich is not None
    return pd.DataFrame({
        "time": tx.time_seconds, "customer": tx.customer_id, "terminal": tx.terminal_id,
        "amount": tx.amount, "fraud": tx.fraud, "scenario": tx.scenario,
        "device": rich.device_id, "ip": rich.ip_address, "category": rich.merchant_category,
        "country": rich.country, "channel": rich.channel,
    })


def _digest(sim: Simulation) -> str:
    digest = hashlib.sha256()
    for name in COLUMNS:
        digest.update(np.ascontiguousarray(getattr(sim.transactions, name)).tobytes())
    return digest.hexdigest()


def test_plain_output_is_what_it_was_before_rich_mode(tmp_path: Path) -> None:
    plain = simulate(PLAIN)
    assert _digest(plain) == PLAIN_DIGEST and plain.rich is None
    out = write_dataset(plain, tmp_path / "plain")
    assert pq.read_schema(out / TRANSACTIONS_FILE).equals(TRANSACTIONS_SCHEMA)
    assert "rich" not in read_manifest(out)["config"]  # the manifest's bytes too


def test_a_rich_run_is_the_plain_run_plus_fields_and_new_frauds(rich_run: Simulation) -> None:
    plain = simulate(PLAIN).transactions
    tx = rich_run.transactions
    added = np.isin(tx.scenario, (SCENARIO_ACCOUNT_TAKEOVER, SCENARIO_DEVICE_TESTING))
    for name in COLUMNS:
        assert np.array_equal(getattr(tx, name)[~added], getattr(plain, name)), name
    assert (np.diff(tx.time_seconds) >= 0).all()
    assert rich_run.rich is not None and len(rich_run.rich) == len(tx)


def test_same_seed_same_rich_data_set_bit_for_bit(rich_run: Simulation, tmp_path: Path) -> None:
    first = write_dataset(rich_run, tmp_path / "a")
    second = write_dataset(simulate(RICH), tmp_path / "b")
    for name in (TRANSACTIONS_FILE, "manifest.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert pq.read_schema(first / TRANSACTIONS_FILE).equals(RICH_TRANSACTIONS_SCHEMA)
    assert SimulationConfig.from_dict(read_manifest(first)["config"]) == RICH
    other = simulate(RICH.with_overrides(seed=12)).rich
    assert other is not None and rich_run.rich is not None
    assert not np.array_equal(other.device_id[:1000], rich_run.rich.device_id[:1000])


def test_rich_values_satisfy_the_payment_schema(rich_run: Simulation,
                                                frame: pd.DataFrame) -> None:
    module = _payments_schema()
    assert MERCHANT_CATEGORIES == module.MERCHANT_CATEGORIES and CHANNELS == module.CHANNELS
    schema = module.PAYMENT
    tx, rich = rich_run.transactions, rich_run.rich
    assert rich is not None
    columns = {"transaction_id": np.arange(len(tx)).astype(str).tolist(),
               "customer_id": tx.customer_id.astype(str).tolist(),
               "terminal_id": tx.terminal_id.astype(str).tolist(),
               "amount": tx.amount.tolist(), "device_id": rich.device_id.tolist(),
               "ip_address": rich.ip_address.tolist(),
               "merchant_category": rich.merchant_category.tolist(),
               "country": rich.country.tolist(), "channel": rich.channel.tolist()}
    for name, values in columns.items():
        field = schema.field(name)
        for value in set(values):
            assert (value is None and not field.required) or field.accepts(value), (name, value)
    assert {f.name for f in schema.fields} - set(columns) <= {"event_time", "currency"}
    # Card present: no IP address and the terminal's reader; online: an address.
    pos = frame["channel"] == "pos"
    assert frame.loc[pos, "ip"].isna().all() and frame.loc[~pos, "ip"].notna().all()
    assert (frame.loc[pos, "device"] == frame.loc[pos, "terminal"].map(reader_id)).all()
    assert set(frame["country"]) <= set(COUNTRIES)


def test_genuine_context_is_habitual(frame: pd.DataFrame) -> None:
    genuine = frame[frame["scenario"] == 0]
    # One category per terminal.
    assert (frame.groupby("terminal")["category"].nunique() == 1).all()
    # A customer pays online from 1-2 own devices, rarely another one.
    online = genuine[genuine["channel"] != "pos"]
    per_device = online.groupby(["customer", "device"]).size()
    top_two = per_device.groupby(level=0).apply(lambda s: s.nlargest(2).sum())
    assert top_two.sum() / len(online) >= 0.98
    assert (per_device[per_device >= 3].groupby(level=0).size() <= 2).all()
    assert 0.25 <= len(online) / len(genuine) <= 0.5
    # Mostly at home, a little travel.
    home = genuine.groupby("customer")["country"].agg(lambda s: s.value_counts().index[0])
    at_home = genuine["country"] == genuine["customer"].map(home)
    assert 0.97 <= at_home.mean() < 1.0


def test_new_scenarios_come_at_their_configured_rates(frame: pd.DataFrame) -> None:
    rich = RICH.rich
    assert rich is not None
    takeovers = frame[frame["scenario"] == SCENARIO_ACCOUNT_TAKEOVER]
    testing = frame[frame["scenario"] == SCENARIO_DEVICE_TESTING]
    assert (takeovers["fraud"] == 1).all() and (testing["fraud"] == 1).all()
    n_takeovers = takeovers["device"].nunique()
    n_sessions = testing["device"].nunique()
    # Every day but the first (cards need an earlier payment).
    assert n_takeovers == rich.takeovers_per_day * (RICH.n_days - 1)
    assert n_sessions == rich.device_testing_sessions_per_day * (RICH.n_days - 1)
    assert 2.5 <= len(takeovers) / n_takeovers <= 3.5  # 1 + Poisson(2)
    assert 10.5 <= len(testing) / n_sessions <= 13.5  # 2 + Poisson(10)
    # Rates are the config's: more sessions, no takeovers.
    changed = simulate(PLAIN.with_overrides(n_days=20, rich=RichMode(
        takeovers_per_day=0, device_testing_sessions_per_day=3)))
    scenario = changed.transactions.scenario
    assert not (scenario == SCENARIO_ACCOUNT_TAKEOVER).any()
    assert changed.rich is not None
    sessions = set(changed.rich.device_id[scenario == SCENARIO_DEVICE_TESTING])
    assert len(sessions) == 3 * 19


def test_card_testing_is_many_cards_from_one_device_and_ip_within_minutes(
    frame: pd.DataFrame,
) -> None:
    testing = frame[frame["scenario"] == SCENARIO_DEVICE_TESTING]
    others = frame[frame["scenario"] != SCENARIO_DEVICE_TESTING]
    first_time = frame.groupby("customer")["time"].min()
    sessions = testing.groupby("device")
    assert (sessions["ip"].nunique() == 1).all()
    assert (sessions["customer"].nunique() == sessions.size()).all()  # one try per card
    assert sessions.size().min() >= 2 and sessions.size().median() >= 10
    assert ((sessions["time"].max() - sessions["time"].min()) <= 15 * 60).all()
    assert (sessions["terminal"].nunique() == 1).all()
    # Existing cards: each paid on an earlier day.
    assert (first_time[testing["customer"]].to_numpy() // 86_400
            < testing["time"].to_numpy() // 86_400).all()
    assert not set(testing["device"]) & set(others["device"])
    assert not set(testing["ip"]) & set(others["ip"].dropna())
    assert testing["amount"].between(0.5, 5.0).all()
    assert set(testing["category"]) <= {"online_services", "gaming"}


def test_account_takeover_is_a_new_device_abroad_for_a_large_amount(
    rich_run: Simulation, frame: pd.DataFrame,
) -> None:
    mean_amount = rich_run.population.customers.mean_amount
    takeover = frame["scenario"] == SCENARIO_ACCOUNT_TAKEOVER
    first_seen_device: dict[str, int] = {}
    first_seen_ip: dict[str, int] = {}
    card_countries: dict[int, set[str]] = defaultdict(set)
    checked = 0
    for row in frame.itertuples():
        if takeover[row.Index] and row.device not in first_seen_device:  # a takeover's first
            assert row.ip not in first_seen_ip
            assert row.country not in card_countries[row.customer]
            checked += 1
        first_seen_device.setdefault(row.device, row.Index)
        if row.ip is not None:
            first_seen_ip.setdefault(row.ip, row.Index)
        card_countries[row.customer].add(row.country)
    assert checked == (RICH.n_days - 1) * 2
    rows = frame[takeover]
    # Every device / IP of a takeover is used by that takeover only.
    assert (rows.groupby("device")["customer"].nunique() == 1).all()
    assert not set(rows["device"]) & set(frame.loc[~takeover, "device"])
    mean = mean_amount[rows["customer"]]
    high = np.minimum(3.0 * mean, 220.0)
    low = np.minimum(1.5 * mean, 0.8 * high)
    assert ((rows["amount"] >= low - 0.005) & (rows["amount"] <= high + 0.005)).all()
    assert (rows["amount"] <= 220.0).all()  # scenario 1's rule never explains them
    assert (rows["amount"] >= 1.5 * mean - 0.005).mean() > 0.95  # large for the card
    assert (rows["amount"] == 220.0).sum() <= 1  # no pile-up at the cap
    assert set(rows["channel"]) <= {"web", "app"}
    # The country is foreign: never the card's home (its usual country).
    home = frame[frame["scenario"] == 0].groupby("customer")["country"].agg(
        lambda s: s.value_counts().index[0])
    assert (rows["country"] != rows["customer"].map(home)).all()


def test_simulate_command_rich_flag_and_frames(tmp_path: Path) -> None:
    out = tmp_path / "rich"
    result = CliRunner().invoke(app, ["simulate", "--out", str(out), "--customers", "100",
                                      "--terminals", "200", "--days", "10", "--radius", "12",
                                      "--rich"])
    assert result.exit_code == 0, result.output
    assert "scenario 5" in result.output and "scenario 6" in result.output
    assert SimulationConfig.from_dict(read_manifest(out)["config"]).rich == RichMode()
    dataset = load_dataset(out)
    assert tuple(dataset.history.columns[-5:]) == RICH_HISTORY_COLUMNS
    assert dataset.history["ip_address"].isna().any()
    assert set(dataset.scenario) >= {SCENARIO_ACCOUNT_TAKEOVER, SCENARIO_DEVICE_TESTING}


def test_rich_docstring_examples() -> None:
    module = importlib.import_module("rtml_simulator.rich")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
