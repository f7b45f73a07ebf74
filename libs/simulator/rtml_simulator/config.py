"""What a simulation run is made of: every knob in one frozen value.

The defaults are those of the reference generator (Le Borgne et al.,
*Reproducible Machine Learning for Credit Card Fraud Detection*, ch. 3), so
published model results on its data are a fair yardstick for ours. A config
is frozen and fully describes a run: the same config (seed included) gives
the same Parquet files bit for bit, and the config is written next to them
(``manifest.json``) so a data set can always be regenerated.

Drift options (:class:`CardTesting`, :class:`DistributionShift`) are off by
default; they exist so later drift-detection and retraining tests can create
a known change at a known day. Rich mode (:class:`RichMode`, also off by
default) adds a device, IP address, merchant category, country and channel to
every payment, and two fraud patterns only those fields reveal; with it off,
a run (its manifest included) is exactly what it was before rich mode existed.

>>> cfg = SimulationConfig(n_customers=50, n_terminals=100, n_days=3)
>>> cfg.with_overrides(seed=7).seed
7
>>> SimulationConfig(n_days=0)
Traceback (most recent call last):
...
ValueError: n_days must be >= 1, got 0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date
from typing import Any

SECONDS_PER_DAY = 86_400


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class FraudScenarios:
    """Parameters of the three reference fraud scenarios (applied in order 1, 2, 3)."""

    #: Scenario 1: any amount strictly above this is fraud.
    amount_threshold: float = 220.0
    #: Scenario 2: terminals compromised each day ...
    terminals_per_day: int = 2
    #: ... whose transactions in [day, day + window) are all fraud.
    terminal_window_days: int = 28
    #: Scenario 3: customers (cards) compromised each day ...
    customers_per_day: int = 3
    #: ... over [day, day + window) ...
    customer_window_days: int = 14
    #: ... this fraction of their transactions (rounded down) ...
    customer_fraud_fraction: float = 1 / 3
    #: ... get their amount multiplied by this and are fraud.
    customer_amount_multiplier: float = 5.0

    def __post_init__(self) -> None:
        _check(self.terminals_per_day >= 0, "terminals_per_day must be >= 0")
        _check(self.customers_per_day >= 0, "customers_per_day must be >= 0")
        _check(self.terminal_window_days >= 1, "terminal_window_days must be >= 1")
        _check(self.customer_window_days >= 1, "customer_window_days must be >= 1")
        _check(0 <= self.customer_fraud_fraction <= 1, "customer_fraud_fraction must be in [0, 1]")
        _check(self.customer_amount_multiplier > 0, "customer_amount_multiplier must be > 0")


@dataclass(frozen=True)
class CardTesting:
    """Drift pattern "card testing" (fraud scenario 4), new from ``start_day``.

    Each day from ``start_day`` (until ``end_day``, exclusive, if set),
    ``cards_per_day`` cards are stolen and tested: one burst of small
    payments at night (burst starts between 00:00 and ``night_end_hour``),
    made at a couple of terminals of a small pool the fraud ring controls.
    Every signal is one the baseline features see: small amount, night,
    a jump in the card's 1-day count and drop of its average amount, and the
    pool terminals' risk once their labels arrive.
    """

    start_day: int
    end_day: int | None = None
    cards_per_day: int = 5
    #: Terminals controlled by the ring, drawn once when the pattern starts.
    terminal_pool_size: int = 20
    #: Terminals (from the pool) used for one card's burst.
    terminals_per_card: int = 2
    #: Mean number of payments in a burst (at least 2 each).
    burst_size_mean: float = 8.0
    #: Mean gap between payments of a burst, seconds (exponential).
    burst_gap_mean_s: float = 90.0
    min_amount: float = 0.5
    max_amount: float = 5.0
    night_end_hour: float = 5.0

    def __post_init__(self) -> None:
        _check(self.start_day >= 0, "card testing start_day must be >= 0")
        _check(self.end_day is None or self.end_day > self.start_day,
               "card testing end_day must be > start_day")
        _check(self.cards_per_day >= 0, "cards_per_day must be >= 0")
        _check(self.terminal_pool_size >= 1, "terminal_pool_size must be >= 1")
        _check(1 <= self.terminals_per_card <= self.terminal_pool_size,
               "terminals_per_card must be in [1, terminal_pool_size]")
        _check(self.burst_size_mean >= 2, "burst_size_mean must be >= 2")
        _check(self.burst_gap_mean_s > 0, "burst_gap_mean_s must be > 0")
        _check(0 <= self.min_amount < self.max_amount, "need 0 <= min_amount < max_amount")
        _check(0 < self.night_end_hour < 24, "night_end_hour must be in (0, 24)")


@dataclass(frozen=True)
class DistributionShift:
    """Covariate drift from ``start_day``: amounts scaled, times of day moved.

    The shift is applied to the very draws the unshifted run makes (no extra
    randomness), so a shifted run and an unshifted one with the same seed
    contain the same payments up to the shift: a paired comparison. Amounts
    are scaled before the fraud rules run, so the fixed ``amount > 220`` rule
    (scenario 1) fires more often under ``amount_scale > 1``, as it would in
    reality. Shifted times wrap around within their day, so daily volumes are
    unchanged.
    """

    start_day: int
    amount_scale: float = 1.0
    hour_shift: float = 0.0

    def __post_init__(self) -> None:
        _check(self.start_day >= 0, "shift start_day must be >= 0")
        _check(self.amount_scale > 0, "amount_scale must be > 0")
        _check(-24 < self.hour_shift < 24, "hour_shift must be in (-24, 24)")

    @property
    def shift_seconds(self) -> int:
        return round(self.hour_shift * 3600)


@dataclass(frozen=True)
class RichMode:
    """Rich mode: payment context fields and the fraud patterns they reveal (scenarios 5, 6).

    Every payment gets ``device_id``, ``ip_address``, ``merchant_category``,
    ``country`` and ``channel`` (the fields of the payments example schema).
    A customer pays online from one or two own devices (rarely a one-off
    one) and a few home IP addresses, in their home country except on rare
    trips abroad; card-present payments (channel ``pos``) carry the
    terminal's reader id and no IP address. Each terminal has one merchant
    category, which sets how often its payments are online.

    Two fraud patterns are added, each its own scenario, labelled fraud:

    * **account takeover** (scenario 5): each day ``takeovers_per_day``
      cards are taken over; each is used for ``1 + Poisson(mean - 1)``
      online payments, minutes apart, from a device never seen before, an IP
      address never seen before, in a country the card has never been used
      in, for ``U(min_factor, max_factor)`` times the card's mean amount
      (the range cut at ``takeover_max_amount``, by default the scenario-1
      threshold, so the amount rule alone never explains them);
    * **card testing from one device** (scenario 6): each day
      ``device_testing_sessions_per_day`` sessions; in each, one fraudster
      device and IP address try ``2 + Poisson(mean - 2)`` different existing
      cards, one small payment each, seconds apart, at one digital-goods
      merchant.

    Everything rich is drawn from its own random streams, so a rich run holds
    every payment of the same config's plain run, unchanged, plus these.
    """

    #: Share of customers with a second own device (the others have one).
    second_device_share: float = 0.4
    #: Chance that an online payment comes from a one-off device (a new phone, a shared PC).
    new_device_rate: float = 0.01
    #: Home IP addresses per customer: uniform in 1 .. this.
    max_home_ips: int = 3
    #: Chance, per customer and day, that a trip abroad starts that day.
    travel_rate: float = 0.003
    #: Trip length in days: 1 + Poisson(mean - 1).
    trip_days_mean: float = 4.0
    #: Scenario 5: cards taken over per day.
    takeovers_per_day: int = 2
    #: Payments per takeover: 1 + Poisson(mean - 1).
    takeover_payments_mean: float = 3.0
    #: Mean gap between a takeover's payments, seconds (exponential).
    takeover_gap_mean_s: float = 600.0
    #: A takeover payment is U(min_factor, max_factor) x the card's mean amount ...
    takeover_min_factor: float = 1.5
    takeover_max_factor: float = 3.0
    #: ... that range cut at this (its low end kept below 0.8 x its high end).
    takeover_max_amount: float = 220.0
    #: Scenario 6: card-testing sessions (one fraudster device each) per day.
    device_testing_sessions_per_day: int = 1
    #: Distinct cards tried in a session: 2 + Poisson(mean - 2).
    device_testing_cards_mean: float = 12.0
    #: Mean gap between a session's attempts, seconds (exponential).
    device_testing_gap_mean_s: float = 20.0
    device_testing_min_amount: float = 0.5
    device_testing_max_amount: float = 5.0

    def __post_init__(self) -> None:
        _check(0 <= self.second_device_share <= 1, "second_device_share must be in [0, 1]")
        _check(0 <= self.new_device_rate <= 1, "new_device_rate must be in [0, 1]")
        _check(self.max_home_ips >= 1, "max_home_ips must be >= 1")
        _check(0 <= self.travel_rate <= 1, "travel_rate must be in [0, 1]")
        _check(self.trip_days_mean >= 1, "trip_days_mean must be >= 1")
        _check(self.takeovers_per_day >= 0, "takeovers_per_day must be >= 0")
        _check(self.takeover_payments_mean >= 1, "takeover_payments_mean must be >= 1")
        _check(self.takeover_gap_mean_s > 0, "takeover_gap_mean_s must be > 0")
        _check(0 < self.takeover_min_factor <= self.takeover_max_factor,
               "need 0 < takeover_min_factor <= takeover_max_factor")
        _check(self.takeover_max_amount > 0, "takeover_max_amount must be > 0")
        _check(self.device_testing_sessions_per_day >= 0,
               "device_testing_sessions_per_day must be >= 0")
        _check(self.device_testing_cards_mean >= 2, "device_testing_cards_mean must be >= 2")
        _check(self.device_testing_gap_mean_s > 0, "device_testing_gap_mean_s must be > 0")
        _check(0 <= self.device_testing_min_amount < self.device_testing_max_amount,
               "need 0 <= device_testing_min_amount < device_testing_max_amount")


@dataclass(frozen=True)
class SimulationConfig:
    """One simulation run. Defaults: the reference's 5,000 x 10,000 x 183 days."""

    n_customers: int = 5_000
    n_terminals: int = 10_000
    n_days: int = 183
    start_date: date = date(2018, 4, 1)
    #: A customer uses the terminals strictly closer than this (grid is 100 x 100).
    radius: float = 5.0
    seed: int = 0
    fraud: FraudScenarios = field(default_factory=FraudScenarios)
    card_testing: CardTesting | None = None
    shift: DistributionShift | None = None
    #: Rich mode (payment context fields, scenarios 5 and 6); off by default.
    rich: RichMode | None = None

    def __post_init__(self) -> None:
        _check(self.n_customers >= 1, f"n_customers must be >= 1, got {self.n_customers}")
        _check(self.n_terminals >= 1, f"n_terminals must be >= 1, got {self.n_terminals}")
        _check(self.n_days >= 1, f"n_days must be >= 1, got {self.n_days}")
        _check(self.radius > 0, f"radius must be > 0, got {self.radius}")
        _check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        _check(self.fraud.terminals_per_day <= self.n_terminals,
               "fraud.terminals_per_day exceeds n_terminals")
        _check(self.fraud.customers_per_day <= self.n_customers,
               "fraud.customers_per_day exceeds n_customers")
        if self.card_testing is not None:
            _check(self.card_testing.terminal_pool_size <= self.n_terminals,
                   "card_testing.terminal_pool_size exceeds n_terminals")

    def with_overrides(self, **changes: Any) -> SimulationConfig:
        """A copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, written to ``manifest.json``.

        ``rich`` is left out when off, so a plain run's manifest is byte for
        byte what it was before rich mode existed.
        """
        data = dataclasses.asdict(self)
        data["start_date"] = self.start_date.isoformat()
        if self.rich is None:
            del data["rich"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimulationConfig:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["start_date"] = date.fromisoformat(data["start_date"])
        data["fraud"] = FraudScenarios(**data.get("fraud") or {})
        if data.get("card_testing") is not None:
            data["card_testing"] = CardTesting(**data["card_testing"])
        if data.get("shift") is not None:
            data["shift"] = DistributionShift(**data["shift"])
        if data.get("rich") is not None:
            data["rich"] = RichMode(**data["rich"])
        return cls(**data)
