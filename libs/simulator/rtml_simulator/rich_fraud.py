"""Rich mode's fraud patterns (scenarios 5, 6) and the step that adds rich fields to a run.

Both patterns leave the handbook's 15 features little to go on (no amount
above the scenario-1 threshold, no night burst on one card, no compromised
terminal) and are plain in the payments example's features:

* **account takeover** (:data:`SCENARIO_ACCOUNT_TAKEOVER`): a card used from
  a device and an IP address never seen before, in a country the card has
  never been used in, for a few payments of 1.5-3 x the card's mean amount
  (at most 220, the scenario-1 threshold) —
  seen by the card x device / card x country ages and the card's distinct
  devices and countries in a day;
* **card testing from one device** (:data:`SCENARIO_DEVICE_TESTING`): one
  fraudster device and IP address try a dozen different cards, one small
  payment each, seconds apart — seen by the device's / IP address's counts
  and distinct cards over minutes; each card sees a single small payment.

They are generated after scenarios 1-4 (never overwritten), each from its own
stream, then merged into the event-time order.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from rtml_simulator.config import SECONDS_PER_DAY, RichMode, SimulationConfig
from rtml_simulator.profiles import Population
from rtml_simulator.rich import (
    APP,
    COUNTRIES,
    TAKEOVER_CATEGORIES,
    TESTING_CATEGORIES,
    WEB,
    Ids,
    ObjectArray,
    RichColumns,
    RichWorld,
    generate_world,
    genuine_fields,
)
from rtml_simulator.seeding import Stream, stream
from rtml_simulator.table import Transactions
from rtml_simulator.transactions import TIME_OF_DAY_MEAN_S, TIME_OF_DAY_SD_S

SCENARIO_ACCOUNT_TAKEOVER = 5
SCENARIO_DEVICE_TESTING = 6
#: A takeover amount's range ``U(min x mean, max x mean)`` is cut at the cap, its low end
#: kept at most this share of its high end: no pile-up of amounts at the cap itself.
TAKEOVER_LOW_CUT = 0.8

#: Countries each card was used in by a fraud pattern: ``{card: {country code}}``.
FraudCountries = dict[int, set[int]]


class _Rows:
    """Accumulates generated fraud payments (one session at a time)."""

    def __init__(self) -> None:
        self.times: list[np.ndarray] = []
        self.cards: list[np.ndarray] = []
        self.terminals: list[np.ndarray] = []
        self.amounts: list[np.ndarray] = []
        self.devices: list[ObjectArray] = []
        self.ips: list[ObjectArray] = []
        self.categories: list[np.ndarray] = []
        self.countries: list[np.ndarray] = []
        self.channels: list[np.ndarray] = []

    def add(self, *, times: np.ndarray, cards: np.ndarray, terminals: np.ndarray,
            amounts: np.ndarray, device: str, ip: str, world: RichWorld, country: int,
            channel: int) -> None:
        n = len(times)
        self.times.append(times.astype(np.int64))
        self.cards.append(np.asarray(cards, dtype=np.int64))
        self.terminals.append(np.asarray(terminals, dtype=np.int64))
        self.amounts.append(amounts)
        self.devices.append(np.full(n, device, dtype=object))
        self.ips.append(np.full(n, ip, dtype=object))
        self.categories.append(world.terminal_category[terminals])
        self.countries.append(np.full(n, country, dtype=np.int64))
        self.channels.append(np.full(n, channel, dtype=np.int64))

    def build(self, scenario: int) -> tuple[Transactions, RichColumns]:
        if not self.times:
            empty = np.zeros(0, dtype=np.int64)
            none = np.zeros(0, dtype=object)
            return (Transactions.from_columns([], [], [], []),
                    RichColumns.of(device_id=none, ip_address=none.copy(), category=empty,
                                   country=empty, channel=empty))
        n = sum(len(t) for t in self.times)
        tx = Transactions.from_columns(
            time_seconds=np.concatenate(self.times),
            customer_id=np.concatenate(self.cards),
            terminal_id=np.concatenate(self.terminals),
            amount=np.concatenate(self.amounts),
            fraud=np.ones(n, np.int8),
            scenario=np.full(n, scenario, np.int8),
        )
        return tx, RichColumns.of(
            device_id=np.concatenate(self.devices), ip_address=np.concatenate(self.ips),
            category=np.concatenate(self.categories), country=np.concatenate(self.countries),
            channel=np.concatenate(self.channels))


def _session_times(day: int, start: float, gaps: np.ndarray) -> np.ndarray:
    offsets = (start + np.concatenate(([0.0], np.cumsum(gaps)))).astype(np.int64)
    return day * SECONDS_PER_DAY + np.minimum(offsets, SECONDS_PER_DAY - 1)


def first_payment_day(tx: Transactions, n_customers: int) -> np.ndarray:
    """Day of each card's first payment in ``tx`` (the int64 maximum if none)."""
    first = np.full(n_customers, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, tx.customer_id, tx.day)
    return first


def _known_cards(first_day: np.ndarray, day: int) -> np.ndarray:
    """Cards that paid on an earlier day: existing cards, with a history to contrast."""
    return np.flatnonzero(first_day < day)


def generate_device_testing(config: SimulationConfig, rich: RichMode, first_day: np.ndarray,
                            world: RichWorld, ids: Ids,
                            used: FraudCountries) -> tuple[Transactions, RichColumns]:
    """Scenario 6 payments, unsorted; records each tested card's country in ``used``.

    Sessions run every day from day 1 and try cards that paid on an earlier day.
    """
    rng = stream(config.seed, Stream.DEVICE_TESTING)
    merchants = world.terminals_in(TESTING_CATEGORIES)
    rows = _Rows()
    for day in range(1, config.n_days):
        cards = _known_cards(first_day, day)
        if len(cards) == 0:
            continue
        for _ in range(rich.device_testing_sessions_per_day):
            size = min(2 + int(rng.poisson(rich.device_testing_cards_mean - 2)), len(cards))
            tested = rng.choice(cards, size=size, replace=False)
            start = rng.uniform(0.0, SECONDS_PER_DAY - 3_600)
            gaps = rng.exponential(rich.device_testing_gap_mean_s, size - 1)
            terminal = int(rng.choice(merchants))
            country = int(rng.integers(len(COUNTRIES)))
            amounts = np.round(rng.uniform(rich.device_testing_min_amount,
                                           rich.device_testing_max_amount, size), 2)
            rows.add(times=_session_times(day, start, gaps), cards=tested,
                     terminals=np.full(size, terminal), amounts=amounts,
                     device=str(ids.devices(1)[0]), ip=str(ids.ips(1)[0]), world=world,
                     country=country, channel=WEB)
            for card in tested.tolist():
                used[card].add(country)
    return rows.build(SCENARIO_DEVICE_TESTING)


def generate_account_takeovers(config: SimulationConfig, rich: RichMode,
                               population: Population, first_day: np.ndarray,
                               world: RichWorld, ids: Ids,
                               used: FraudCountries) -> tuple[Transactions, RichColumns]:
    """Scenario 5 payments, unsorted.

    Takeovers happen every day from day 1, of cards that paid on an earlier
    day. The country is one the card was never used in: not home, not a trip
    begun by that day, not one a fraud pattern used it in (``used``, updated).
    """
    rng = stream(config.seed, Stream.ACCOUNT_TAKEOVER)
    merchants = world.terminals_in(TAKEOVER_CATEGORIES)
    mean_amount = population.customers.mean_amount
    rows = _Rows()
    for day in range(1, config.n_days):
        cards = _known_cards(first_day, day)
        per_day = min(rich.takeovers_per_day, len(cards))
        for card in rng.choice(cards, size=per_day, replace=False).tolist():
            size = 1 + int(rng.poisson(rich.takeover_payments_mean - 1))
            start = float(np.clip(rng.normal(TIME_OF_DAY_MEAN_S, TIME_OF_DAY_SD_S),
                                  1, SECONDS_PER_DAY - 1))
            gaps = rng.exponential(rich.takeover_gap_mean_s, size - 1)
            seen = world.countries_seen(card, day) | used[card]
            fresh = [c for c in range(len(COUNTRIES)) if c not in seen]
            pick = int(rng.integers(len(fresh))) if fresh else -1
            channel = int(rng.integers(WEB, APP + 1))
            terminals = rng.choice(merchants, size=size)
            high = min(rich.takeover_max_factor * mean_amount[card], rich.takeover_max_amount)
            low = min(rich.takeover_min_factor * mean_amount[card], TAKEOVER_LOW_CUT * high)
            amounts = np.round(rng.uniform(low, high, size), 2)
            if pick < 0:  # used everywhere already (needs ~25 trips): no takeover
                continue
            rows.add(times=_session_times(day, start, gaps), cards=np.full(size, card),
                     terminals=terminals, amounts=amounts, device=str(ids.devices(1)[0]),
                     ip=str(ids.ips(1)[0]), world=world, country=fresh[pick],
                     channel=channel)
            used[card].add(fresh[pick])
    return rows.build(SCENARIO_ACCOUNT_TAKEOVER)


def add_rich(config: SimulationConfig, rich: RichMode, population: Population,
             tx: Transactions) -> tuple[Transactions, RichColumns]:
    """Rich fields for the sorted ``tx``, plus scenarios 5 and 6, merged in event-time order.

    The rows of ``tx`` keep their values (their order among the added rows
    follows the usual tie-break: time, customer, then ``tx`` before the added).
    """
    ids = Ids()
    world = generate_world(config, rich, population, ids)
    columns = genuine_fields(config, rich, world, tx, ids)
    first_day = first_payment_day(tx, config.n_customers)
    used: FraudCountries = defaultdict(set)
    testing = generate_device_testing(config, rich, first_day, world, ids, used)
    takeovers = generate_account_takeovers(config, rich, population, first_day, world, ids,
                                           used)
    merged = Transactions.concat([tx, testing[0], takeovers[0]])
    merged_columns = RichColumns.concat([columns, testing[1], takeovers[1]])
    order = merged.sort_order()
    return merged.take(order), merged_columns.take(order)
