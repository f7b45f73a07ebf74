"""Genuine payments: how many, when, how much, where.

Per customer and day the count is Poisson(customer's rate); each payment's
time of day is Normal(noon, 20,000 s) truncated toward zero to whole
seconds, and dropped unless strictly inside the day (0, 86,400); its amount
is Normal(mean, sd) with a negative draw replaced by U(0, 2 x mean), rounded
to cents; its terminal is uniform among the customer's terminals. Customers
with no terminal in range make no payments (their counts are still drawn, so
they consume the same randomness whatever the radius).

Everything is drawn for all customers at once, one array per quantity, from
the ``TRANSACTIONS`` stream: the default run (~1.8 M draws of each) takes a
fraction of a second, where a per-customer Python loop takes minutes.
"""

from __future__ import annotations

import numpy as np

from rtml_simulator.config import SECONDS_PER_DAY, SimulationConfig
from rtml_simulator.drift import apply_distribution_shift
from rtml_simulator.profiles import Population
from rtml_simulator.seeding import Stream, stream
from rtml_simulator.table import Transactions

TIME_OF_DAY_MEAN_S = SECONDS_PER_DAY / 2
TIME_OF_DAY_SD_S = 20_000.0


def generate_genuine(config: SimulationConfig, population: Population) -> Transactions:
    """All genuine payments, unsorted (customer-major, then day, then draw order)."""
    rng = stream(config.seed, Stream.TRANSACTIONS)
    customers, neighbours = population.customers, population.neighbours
    n_customers, n_days = len(customers), config.n_days

    counts = rng.poisson(customers.mean_tx_per_day[:, None], size=(n_customers, n_days))
    counts[neighbours.counts == 0] = 0
    flat_counts = counts.ravel()
    customer_id = np.repeat(np.repeat(np.arange(n_customers, dtype=np.int64), n_days), flat_counts)
    day = np.repeat(np.tile(np.arange(n_days, dtype=np.int64), n_customers), flat_counts)

    # Whole seconds, truncated toward zero (astype), before the in-day test.
    time_of_day = rng.normal(TIME_OF_DAY_MEAN_S, TIME_OF_DAY_SD_S, len(day)).astype(np.int64)
    inside = (time_of_day > 0) & (time_of_day < SECONDS_PER_DAY)
    customer_id, day, time_of_day = customer_id[inside], day[inside], time_of_day[inside]

    mean = customers.mean_amount[customer_id]
    amount = rng.normal(mean, customers.std_amount[customer_id])
    negative = np.flatnonzero(amount < 0)
    amount[negative] = rng.uniform(0.0, 2.0 * mean[negative])

    n_terminals = neighbours.counts[customer_id]
    pick = rng.integers(0, n_terminals)
    terminal_id = neighbours.terminal_ids[neighbours.offsets[customer_id] + pick]

    if config.shift is not None:
        time_of_day, amount = apply_distribution_shift(config.shift, day, time_of_day, amount)

    return Transactions.from_columns(
        time_seconds=day * SECONDS_PER_DAY + time_of_day,
        customer_id=customer_id,
        terminal_id=terminal_id,
        amount=np.round(amount, 2),
    )
