"""The three reference fraud scenarios, applied in order (later ones overwrite).

1. Amount above a threshold (220) is fraud: the trivially learnable case.
2. Compromised terminals: each day 2 terminals are drawn; all their payments
   in ``[day, day + 28)`` are fraud. Learnable only from terminal risk, which
   needs *delayed labels* (this is why the streaming system carries them).
3. Compromised cards: each day 3 customers are drawn; of their payments in
   ``[day, day + 14)`` a third (rounded down, drawn without replacement) get
   ``amount x 5`` and are fraud. Learnable from the customer's spending
   history (amount vs. its recent average).

Scenarios 2 and 3 draw from all terminals / customers, each from its own
random stream, one draw per day of the run. Scenario 3 picks among every
payment in the window, fraud or not, so a payment picked again by a later,
overlapping compromise of the same card is multiplied again (rare: it needs
the same card drawn twice within 14 days).

Expects the table sorted in event time (scenario 3's picks are made over
each card's payments in that order, which keeps them reproducible).
"""

from __future__ import annotations

import numpy as np

from rtml_simulator.config import FraudScenarios, SimulationConfig
from rtml_simulator.seeding import Stream, stream
from rtml_simulator.table import Transactions

SCENARIO_AMOUNT = 1
SCENARIO_TERMINAL = 2
SCENARIO_CARD = 3


def _mark(tx: Transactions, rows: np.ndarray, scenario: int) -> None:
    tx.fraud[rows] = 1
    tx.scenario[rows] = scenario


def apply_amount_scenario(tx: Transactions, params: FraudScenarios) -> None:
    """Scenario 1, in place."""
    _mark(tx, tx.amount > params.amount_threshold, SCENARIO_AMOUNT)


def compromised_terminal_days(
    n_terminals: int, n_days: int, params: FraudScenarios, rng: np.random.Generator
) -> np.ndarray:
    """Boolean matrix ``[terminal, day]``: is the terminal compromised that day."""
    compromised = np.zeros((n_terminals, n_days), dtype=bool)
    for day in range(n_days):
        drawn = rng.choice(n_terminals, size=params.terminals_per_day, replace=False)
        compromised[drawn, day:day + params.terminal_window_days] = True
    return compromised


def apply_terminal_scenario(
    tx: Transactions, n_terminals: int, n_days: int, params: FraudScenarios,
    rng: np.random.Generator,
) -> None:
    """Scenario 2, in place."""
    compromised = compromised_terminal_days(n_terminals, n_days, params, rng)
    _mark(tx, compromised[tx.terminal_id, tx.day], SCENARIO_TERMINAL)


def apply_card_scenario(
    tx: Transactions, n_customers: int, n_days: int, params: FraudScenarios,
    rng: np.random.Generator,
) -> None:
    """Scenario 3, in place."""
    day = tx.day
    by_customer = np.argsort(tx.customer_id, kind="stable")  # time order within a customer
    bounds = np.searchsorted(tx.customer_id[by_customer], np.arange(n_customers + 1))
    for start_day in range(n_days):
        drawn = rng.choice(n_customers, size=params.customers_per_day, replace=False)
        windows = []
        for customer in drawn:
            rows = by_customer[bounds[customer]:bounds[customer + 1]]
            rows_day = day[rows]
            windows.append(rows[(rows_day >= start_day)
                                & (rows_day < start_day + params.customer_window_days)])
        candidates = np.sort(np.concatenate(windows))
        k = int(len(candidates) * params.customer_fraud_fraction)
        if k == 0:
            continue
        picked = rng.choice(candidates, size=k, replace=False)
        tx.amount[picked] = np.round(tx.amount[picked] * params.customer_amount_multiplier, 2)
        _mark(tx, picked, SCENARIO_CARD)


def apply_reference_scenarios(tx: Transactions, config: SimulationConfig) -> None:
    """Scenarios 1, 2, 3 in order, in place, each from its own stream."""
    params = config.fraud
    apply_amount_scenario(tx, params)
    apply_terminal_scenario(tx, config.n_terminals, config.n_days, params,
                            stream(config.seed, Stream.SCENARIO_2))
    apply_card_scenario(tx, config.n_customers, config.n_days, params,
                        stream(config.seed, Stream.SCENARIO_3))
