"""One simulation run, end to end in memory: population, payments, fraud, drift.

Order matters and is fixed: genuine payments (with any distribution shift),
sort in event time, reference scenarios 1 -> 2 -> 3, then the card-testing
payments are merged in. In rich mode (``config.rich``), every payment then
gets its rich fields and the account-takeover (5) and device card-testing (6)
payments are merged in too (:mod:`rtml_simulator.rich_fraud`); the steps
before draw exactly what they draw without it. ``transaction_id`` is the row
number of the final event-time order.

>>> from rtml_simulator.config import SimulationConfig
>>> sim = simulate(SimulationConfig(n_customers=100, n_terminals=200, n_days=10, seed=1))
>>> sim.summary().n_transactions == len(sim.transactions)
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rtml_simulator.config import SimulationConfig
from rtml_simulator.drift import generate_card_testing
from rtml_simulator.fraud import apply_reference_scenarios
from rtml_simulator.profiles import Population, generate_population
from rtml_simulator.rich import RichColumns
from rtml_simulator.rich_fraud import add_rich
from rtml_simulator.table import Transactions
from rtml_simulator.transactions import generate_genuine

#: Called with a short stage name before each step (for progress display).
StageCallback = Callable[[str], None]

STAGES = ("profiles", "transactions", "fraud scenarios", "drift patterns", "rich fields")


@dataclass(frozen=True)
class Summary:
    """Headline figures of a run, checked by tests and written to the manifest."""

    n_transactions: int
    n_days: int
    per_day_min: int
    per_day_mean: float
    per_day_max: int
    n_fraud: int
    fraud_rate: float
    per_scenario: dict[int, int]
    active_customers: int
    mean_terminals_per_customer: float


@dataclass(frozen=True)
class Simulation:
    """A finished run: its config, population and sorted transactions.

    ``rich`` holds the rich fields, row-aligned with ``transactions``, in
    rich mode only.
    """

    config: SimulationConfig
    population: Population
    transactions: Transactions
    rich: RichColumns | None = None

    def summary(self) -> Summary:
        tx = self.transactions
        per_day = np.bincount(tx.day, minlength=self.config.n_days)
        scenarios, counts = np.unique(tx.scenario, return_counts=True)
        n_fraud = int(tx.fraud.sum())
        neighbours = self.population.neighbours.counts
        return Summary(
            n_transactions=len(tx),
            n_days=self.config.n_days,
            per_day_min=int(per_day.min()),
            per_day_mean=float(per_day.mean()),
            per_day_max=int(per_day.max()),
            n_fraud=n_fraud,
            fraud_rate=n_fraud / len(tx) if len(tx) else 0.0,
            per_scenario={int(s): int(c) for s, c in zip(scenarios, counts, strict=True)},
            active_customers=int((neighbours > 0).sum()),
            mean_terminals_per_customer=float(neighbours.mean()),
        )


def simulate(config: SimulationConfig, on_stage: StageCallback | None = None) -> Simulation:
    """Run the whole generative process for ``config``."""
    stage = on_stage or (lambda _name: None)
    stage(STAGES[0])
    population = generate_population(config)
    stage(STAGES[1])
    tx = generate_genuine(config, population).sorted()
    stage(STAGES[2])
    apply_reference_scenarios(tx, config)
    stage(STAGES[3])
    if config.card_testing is not None:
        extra = generate_card_testing(config, config.card_testing, population)
        tx = Transactions.concat([tx, extra]).sorted()
    if config.rich is None:
        return Simulation(config, population, tx)
    stage(STAGES[4])
    tx, rich = add_rich(config, config.rich, population, tx)
    return Simulation(config, population, tx, rich)
