"""Known changes at a known day, for drift detection and retraining tests.

Two kinds (configured in :mod:`rtml_simulator.config`):

* :class:`~rtml_simulator.config.DistributionShift` — covariate drift:
  genuine amounts scaled and times of day moved from a given day. It is a
  deterministic transform of the baseline draws, so the shifted data set is
  the baseline one, changed (paired comparison, no extra randomness).
* :class:`~rtml_simulator.config.CardTesting` — a *new fraud pattern*
  (scenario 4) from a given day: stolen cards tested with bursts of small
  night-time payments at a few terminals of a fraud ring. These payments are
  added to the genuine ones after scenarios 1-3 ran, from their own random
  stream, so enabling it leaves every other row unchanged.

>>> import numpy as np
>>> from rtml_simulator.config import DistributionShift
>>> shift = DistributionShift(start_day=1, amount_scale=2.0, hour_shift=-1.0)
>>> t, a = apply_distribution_shift(shift, np.array([0, 1]), np.array([100, 100]),
...                                 np.array([10.0, 10.0]))
>>> t.tolist(), a.tolist()
([100, 82900], [10.0, 20.0])
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from rtml_simulator.config import SECONDS_PER_DAY, CardTesting, DistributionShift, SimulationConfig
from rtml_simulator.profiles import Population
from rtml_simulator.seeding import Stream, stream
from rtml_simulator.table import Transactions

SCENARIO_CARD_TESTING = 4


def apply_distribution_shift(
    shift: DistributionShift,
    day: npt.NDArray[np.int64],
    time_of_day: npt.NDArray[np.int64],
    amount: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Shifted copies of ``time_of_day`` (wrapped within the day) and ``amount``."""
    after = day >= shift.start_day
    time_of_day = time_of_day.copy()
    amount = amount.copy()
    time_of_day[after] = (time_of_day[after] + shift.shift_seconds) % SECONDS_PER_DAY
    amount[after] *= shift.amount_scale
    return time_of_day, amount


def generate_card_testing(
    config: SimulationConfig, pattern: CardTesting, population: Population
) -> Transactions:
    """The card-testing payments (all fraud, scenario 4), unsorted."""
    rng = stream(config.seed, Stream.CARD_TESTING)
    end_day = min(pattern.end_day or config.n_days, config.n_days)
    pool = rng.choice(config.n_terminals, size=pattern.terminal_pool_size, replace=False)
    # Cards of customers who pay somewhere (others have no genuine history to contrast).
    cards = np.flatnonzero(population.neighbours.counts > 0)
    per_day = min(pattern.cards_per_day, len(cards))
    times, customers, terminals, amounts = [], [], [], []
    for day in range(pattern.start_day, end_day):
        for card in rng.choice(cards, size=per_day, replace=False):
            size = 2 + int(rng.poisson(pattern.burst_size_mean - 2))
            ring = rng.choice(pool, size=pattern.terminals_per_card, replace=False)
            start = rng.uniform(0.0, pattern.night_end_hour * 3600)
            gaps = rng.exponential(pattern.burst_gap_mean_s, size - 1)
            offsets = (start + np.concatenate(([0.0], np.cumsum(gaps)))).astype(np.int64)
            offsets = np.minimum(offsets, SECONDS_PER_DAY - 1)
            times.append(day * SECONDS_PER_DAY + offsets)
            customers.append(np.full(size, card, dtype=np.int64))
            terminals.append(rng.choice(ring, size=size))
            amounts.append(np.round(rng.uniform(pattern.min_amount, pattern.max_amount, size), 2))
    if not times:
        return Transactions.from_columns([], [], [], [])
    n = sum(len(t) for t in times)
    return Transactions.from_columns(
        time_seconds=np.concatenate(times),
        customer_id=np.concatenate(customers),
        terminal_id=np.concatenate(terminals),
        amount=np.concatenate(amounts),
        fraud=np.ones(n, np.int8),
        scenario=np.full(n, SCENARIO_CARD_TESTING, np.int8),
    )
