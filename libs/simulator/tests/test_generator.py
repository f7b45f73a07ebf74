"""The generator: reference figures on the default run, exact scenario rules, seeding.

The full default run (5,000 customers x 10,000 terminals x 183 days) takes
about 2 s to generate and 1 s to write here, so it is tested as is rather
than through a scaled-down stand-in. Expected ranges: see docs/simulator.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rtml_simulator import (
    CardTesting,
    DistributionShift,
    Simulation,
    SimulationConfig,
    read_manifest,
    simulate,
    write_dataset,
)
from rtml_simulator.config import FraudScenarios
from rtml_simulator.fraud import (
    apply_amount_scenario,
    apply_card_scenario,
    apply_terminal_scenario,
    compromised_terminal_days,
)
from rtml_simulator.io import (
    CUSTOMERS_FILE,
    MANIFEST_FILE,
    TERMINALS_FILE,
    TRANSACTIONS_FILE,
    TRANSACTIONS_SCHEMA,
)
from rtml_simulator.table import Transactions

DATA_FILES = (TRANSACTIONS_FILE, CUSTOMERS_FILE, TERMINALS_FILE, MANIFEST_FILE)
#: A small run with the default terminal density (radius scaled to keep ~75 terminals each).
SMALL = SimulationConfig(n_customers=600, n_terminals=1_200, n_days=60,
                         radius=5.0 * (10_000 / 1_200) ** 0.5, seed=11)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Simulation, Path]:
    sim = simulate(SimulationConfig())
    return sim, write_dataset(sim, tmp_path_factory.mktemp("default"))


def test_default_run_matches_the_reference_figures(default_run: tuple[Simulation, Path]) -> None:
    sim, _ = default_run
    summary = sim.summary()
    assert 1_700_000 <= summary.n_transactions <= 1_850_000
    assert 9_300 <= summary.per_day_mean <= 9_900
    assert summary.per_day_min >= 9_000 and summary.per_day_max <= 10_300
    assert 0.0075 <= summary.fraud_rate <= 0.0095
    assert set(summary.per_scenario) == {0, 1, 2, 3}
    assert 800 <= summary.per_scenario[1] <= 1_200
    assert 8_000 <= summary.per_scenario[2] <= 10_500
    assert 4_000 <= summary.per_scenario[3] <= 5_500
    assert summary.n_fraud == sum(c for s, c in summary.per_scenario.items() if s)
    assert 70 <= summary.mean_terminals_per_customer <= 80


def test_written_schema_and_row_invariants(default_run: tuple[Simulation, Path]) -> None:
    _, out = default_run
    table = pq.read_table(out / TRANSACTIONS_FILE)
    assert table.schema.equals(TRANSACTIONS_SCHEMA)
    cols = {name: table.column(name).to_numpy() for name in table.column_names
            if name != "tx_datetime"}
    n = table.num_rows
    assert np.array_equal(cols["transaction_id"], np.arange(n))
    seconds = cols["tx_time_seconds"]
    assert (np.diff(seconds) >= 0).all()  # sorted in event time, ids follow
    micros = table.column("tx_datetime").cast(pa.int64()).to_numpy()
    start_us = int(np.datetime64("2018-04-01T00:00:00", "us").astype(np.int64))
    assert np.array_equal(micros, start_us + seconds * 1_000_000)
    assert np.array_equal(cols["tx_time_days"], seconds // 86_400)
    assert cols["tx_time_days"].max() == 182
    assert np.array_equal(cols["tx_fraud"], (cols["tx_fraud_scenario"] > 0).astype(np.int8))
    assert (cols["tx_amount"] >= 0).all()
    assert np.array_equal(np.round(cols["tx_amount"], 2), cols["tx_amount"])
    # Ties in time are ordered by customer id.
    same_time = np.diff(seconds) == 0
    assert (np.diff(cols["customer_id"])[same_time] >= 0).all()

    customers = pq.read_table(out / CUSTOMERS_FILE)
    terminals = pq.read_table(out / TERMINALS_FILE)
    assert customers.num_rows == 5_000 and terminals.num_rows == 10_000
    available = customers.column("available_terminals").to_pylist()
    sample = np.random.default_rng(0).choice(n, 20_000, replace=False)
    for row in sample:
        customer, terminal = int(cols["customer_id"][row]), int(cols["terminal_id"][row])
        assert terminal in available[customer]
    # And each available terminal really is within the radius.
    tx_, ty = terminals.column("x_location").to_numpy(), terminals.column("y_location").to_numpy()
    cx, cy = customers.column("x_location").to_numpy(), customers.column("y_location").to_numpy()
    for customer in range(0, 5_000, 250):
        ids = np.asarray(available[customer], dtype=np.int64)
        d2 = (tx_ - cx[customer]) ** 2 + (ty - cy[customer]) ** 2
        assert np.array_equal(ids, np.flatnonzero(d2 < 25.0))

    manifest = read_manifest(out)
    assert SimulationConfig.from_dict(manifest["config"]) == SimulationConfig()
    assert manifest["summary"]["n_transactions"] == n


def test_one_seed_gives_identical_files_bit_for_bit(
    default_run: tuple[Simulation, Path], tmp_path: Path
) -> None:
    _, first = default_run
    second = write_dataset(simulate(SimulationConfig()), tmp_path / "again")
    for name in DATA_FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_another_seed_gives_other_data() -> None:
    a = simulate(SMALL).transactions
    b = simulate(SMALL.with_overrides(seed=SMALL.seed + 1)).transactions
    assert not a.equals(b)
    assert a.equals(simulate(SMALL).transactions)


def test_small_run_keeps_the_reference_shape() -> None:
    summary = simulate(SMALL).summary()
    # ~1.94 payments per customer-day (rate U(0,4), 3 % dropped outside the day).
    assert 1.75 <= summary.per_day_mean / SMALL.n_customers <= 2.1
    assert 65 <= summary.mean_terminals_per_customer <= 85


# -- fraud scenarios, on hand-made tables --------------------------------------------------


def _table(days: list[int], customers: list[int], terminals: list[int],
           amounts: list[float]) -> Transactions:
    return Transactions.from_columns([d * 86_400 + 43_200 for d in days], customers, terminals,
                                     amounts)


def test_scenario_1_marks_amounts_strictly_above_the_threshold() -> None:
    tx = _table([0, 0, 0], [1, 2, 3], [0, 0, 0], [220.0, 220.01, 5.0])
    apply_amount_scenario(tx, FraudScenarios())
    assert tx.fraud.tolist() == [0, 1, 0] and tx.scenario.tolist() == [0, 1, 0]


def test_scenario_2_marks_every_payment_of_a_compromised_terminal_in_its_window() -> None:
    params = FraudScenarios(terminals_per_day=1, terminal_window_days=3)
    n_terminals, n_days = 4, 6
    matrix = compromised_terminal_days(n_terminals, n_days, params, np.random.default_rng(5))
    assert matrix.sum(axis=0).min() >= 1  # someone compromised every day
    days = [d for d in range(n_days) for _ in range(n_terminals)]
    terminals = [t for _ in range(n_days) for t in range(n_terminals)]
    tx = _table(days, [0] * len(days), terminals, [1.0] * len(days))
    apply_terminal_scenario(tx, n_terminals, n_days, params, np.random.default_rng(5))
    assert tx.fraud.astype(bool).tolist() == [bool(matrix[t, d]) for d, t in zip(days, terminals,
                                                                                    strict=True)]
    # The window is [day, day + 3): compromised on day x iff drawn on a day in (x - 3, x].
    rng = np.random.default_rng(5)
    drawn = [set(rng.choice(n_terminals, size=1, replace=False).tolist()) for _ in range(n_days)]
    for t in range(n_terminals):
        for x in range(n_days):
            assert matrix[t, x] == any(t in drawn[d] for d in range(max(0, x - 2), x + 1))


def test_scenario_3_multiplies_a_third_of_the_window_and_marks_it() -> None:
    params = FraudScenarios(customers_per_day=1, customer_window_days=14)
    # One customer, 9 payments in days 0..8 and 3 more on days 20..22 (outside any window
    # starting on day 0; the run has only 1 day so only day 0 draws).
    days = [*range(9), 20, 21, 22]
    tx = _table(days, [0] * 12, [0] * 12, [10.0] * 12)
    apply_card_scenario(tx, n_customers=1, n_days=1, params=params, rng=np.random.default_rng(0))
    picked = tx.scenario == 3
    assert picked.sum() == 3 and picked[:9].sum() == 3
    assert tx.amount[picked].tolist() == [50.0] * 3
    assert tx.amount[~picked].tolist() == [10.0] * 9
    assert tx.fraud.tolist() == picked.astype(np.int8).tolist()


def test_later_scenarios_overwrite_earlier_ones() -> None:
    sim = simulate(SMALL)
    tx = sim.transactions
    # Scenario 1 never survives on an amount <= 220; scenario 3 amounts came from x5.
    assert (tx.amount[tx.scenario == 1] > 220).all()
    assert (tx.fraud[tx.amount > 220] == 1).all()


# -- drift options --------------------------------------------------------------------------


def _rows_key(tx: Transactions, keep: np.ndarray) -> list[tuple[int, int, int, float, int]]:
    return list(zip(tx.time_seconds[keep].tolist(), tx.customer_id[keep].tolist(),
                    tx.terminal_id[keep].tolist(), tx.amount[keep].tolist(),
                    tx.scenario[keep].tolist(), strict=True))


def test_card_testing_adds_night_bursts_and_leaves_other_rows_alone() -> None:
    pattern = CardTesting(start_day=30)
    base = simulate(SMALL).transactions
    drifted = simulate(SMALL.with_overrides(card_testing=pattern)).transactions
    new = drifted.scenario == 4
    assert _rows_key(drifted, ~new) == _rows_key(base, np.ones(len(base), bool))
    assert new.sum() > 0
    assert (drifted.fraud[new] == 1).all()
    assert (drifted.day[new] >= 30).all()
    assert (drifted.time_seconds[new] % 86_400 < 7 * 3_600).all()  # "night" feature: hour <= 6
    amounts = drifted.amount[new]
    assert (amounts >= pattern.min_amount).all() and (amounts <= pattern.max_amount).all()
    assert len(np.unique(drifted.terminal_id[new])) <= pattern.terminal_pool_size
    per_day = np.bincount(drifted.day[new], minlength=SMALL.n_days)[30:]
    # 5 cards a day, bursts of 2 + Poisson(6) payments: ~40 a day.
    assert 25 <= per_day.mean() <= 55
    # Bursts: a tested card makes several payments that night.
    cards_days = np.unique(np.stack([drifted.customer_id[new], drifted.day[new]]), axis=1)
    assert cards_days.shape[1] == 5 * (SMALL.n_days - 30)


def test_card_testing_end_day_stops_the_pattern() -> None:
    sim = simulate(SMALL.with_overrides(card_testing=CardTesting(start_day=10, end_day=20)))
    days = sim.transactions.day[sim.transactions.scenario == 4]
    assert days.min() == 10 and days.max() == 19


def test_distribution_shift_moves_the_same_payments() -> None:
    shift = DistributionShift(start_day=20, amount_scale=2.0, hour_shift=3.0)
    base = simulate(SMALL).transactions
    moved = simulate(SMALL.with_overrides(shift=shift)).transactions
    before_b, before_m = base.day < 20, moved.day < 20
    assert _rows_key(moved, before_m) == _rows_key(base, before_b)
    assert np.array_equal(np.bincount(base.day), np.bincount(moved.day))  # volumes kept

    def paired(tx: Transactions, undo_seconds: int) -> tuple[np.ndarray, np.ndarray]:
        after = (tx.day >= 20) & (tx.scenario != 3)
        original_time = (tx.time_seconds[after] % 86_400 - undo_seconds) % 86_400
        key = np.stack([tx.customer_id[after], tx.day[after], original_time,
                        tx.terminal_id[after]])
        order = np.lexsort(key[::-1])
        return key[:, order], tx.amount[after][order]

    key_b, amount_b = paired(base, 0)
    key_m, amount_m = paired(moved, shift.shift_seconds)
    common = min(key_b.shape[1], key_m.shape[1])
    # Scenario 3 picks depend on row order, so compare the rows neither run touched.
    assert abs(key_b.shape[1] - key_m.shape[1]) < 0.02 * common
    b = {tuple(k): a for k, a in zip(key_b.T.tolist(), amount_b.tolist(), strict=True)}
    m = {tuple(k): a for k, a in zip(key_m.T.tolist(), amount_m.tolist(), strict=True)}
    shared = b.keys() & m.keys()
    assert len(shared) >= 0.97 * common
    assert all(abs(m[k] - 2 * b[k]) <= 0.011 for k in shared)
    # More payments cross the fixed amount rule once amounts double.
    assert (moved.scenario == 1).sum() > 3 * (base.scenario == 1).sum()


def test_config_round_trips_through_the_manifest_form() -> None:
    config = SMALL.with_overrides(card_testing=CardTesting(start_day=3, cards_per_day=2),
                                  shift=DistributionShift(start_day=4, amount_scale=1.5))
    assert SimulationConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="amount_scale"):
        DistributionShift(start_day=1, amount_scale=0)
    with pytest.raises(ValueError, match="terminals_per_day"):
        SimulationConfig(n_terminals=1)
    assert dataclasses.asdict(config)["card_testing"]["start_day"] == 3
