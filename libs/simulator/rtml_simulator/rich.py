"""Rich mode's world and its genuine payments: devices, IP addresses, merchants, countries.

The plain simulator knows a payment's card, terminal, time and amount. Rich
mode (:class:`~rtml_simulator.config.RichMode`) adds what a risk team also
has, the fields of the payments example schema:

* ``merchant_category`` — fixed per terminal (one of :data:`MERCHANT_CATEGORIES`);
  the category sets how often the terminal's payments are online (fuel
  never, online services nearly always);
* ``channel`` — ``pos`` (card present) or online, ``web`` / ``app`` after
  the customer's own preference;
* ``device_id`` — online, one of the customer's 1-2 own devices (the app
  runs on the first), rarely a one-off device; card present, the terminal's
  reader (``pos-<terminal>``);
* ``ip_address`` — online, one of the customer's 1-3 home addresses, or the
  trip's address when abroad; card present, none;
* ``country`` — the customer's home country, or the trip's while abroad
  (trips are rare: 0.3 % of customer-days start one, ~4 days long).

Ids come from :class:`Ids`: every device id and IP address is a bijection of
a counter, so two different ones never collide, and a fraud pattern's "never
seen before" device or address really is new. Everything here draws from
the rich streams only, so the plain columns are those of the plain run.

>>> ids = Ids()
>>> ids.devices(2).tolist(), ids.ips(1).tolist()
(['dev-f4914f6cdd1d', 'dev-6e4aceb75932'], ['91.209.233.149'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from rtml_simulator.config import RichMode, SimulationConfig
from rtml_simulator.profiles import Population
from rtml_simulator.seeding import Stream, stream
from rtml_simulator.table import Transactions

#: Merchant categories, in the payments example's encoding order.
MERCHANT_CATEGORIES = ("grocery", "fuel", "restaurants", "fashion", "electronics",
                       "travel", "online_services", "gaming")
#: Share of terminals in each category.
CATEGORY_WEIGHTS = (0.25, 0.10, 0.20, 0.12, 0.08, 0.05, 0.12, 0.08)
#: Share of a category's payments made online (web or app).
ONLINE_SHARE = np.array([0.05, 0.0, 0.10, 0.40, 0.50, 0.80, 0.95, 0.90])
#: Where account takeovers spend (goods easy to resell) ...
TAKEOVER_CATEGORIES = ("fashion", "electronics", "travel", "online_services", "gaming")
#: ... and where stolen cards are tested (small digital charges).
TESTING_CATEGORIES = ("online_services", "gaming")

#: Channels, in the payments example's encoding order.
CHANNELS = ("pos", "web", "app")
POS, WEB, APP = 0, 1, 2

#: Customers' home countries and their shares.
HOME_COUNTRIES = ("BE", "FR", "NL", "DE", "LU")
HOME_WEIGHTS = (0.40, 0.25, 0.15, 0.15, 0.05)
#: Every country a payment can come from (home countries first).
COUNTRIES = (*HOME_COUNTRIES, "ES", "IT", "PT", "GB", "IE", "CH", "AT", "PL", "SE", "DK",
             "US", "CA", "MA", "TR", "AE", "TH", "BR", "NG", "IN", "CN")

#: Multipliers of the id bijections (odd, so ``i -> i * m + c`` is one-to-one mod 2^k).
_DEVICE_MUL, _DEVICE_ADD, _DEVICE_BITS = 0x9E3779B97F4A7C15, 0x2545F4914F6CDD1D, 48
_IP_MUL, _IP_ADD = 2654435761, 0x5BD1E995

ObjectArray = npt.NDArray[np.object_]
IntArray = npt.NDArray[np.int64]


def _objects(values: Sequence[object]) -> ObjectArray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def codes_to_strings(codes: npt.NDArray[np.integer], vocabulary: Sequence[str]) -> ObjectArray:
    """``vocabulary[code]`` for each code, as an object array of str."""
    return _objects(vocabulary)[codes]


@dataclass
class Ids:
    """Hands out device ids and IP addresses, each distinct from all handed out before."""

    next_device: int = 0
    next_ip: int = 0

    def devices(self, n: int) -> ObjectArray:
        mask = (1 << _DEVICE_BITS) - 1
        start, self.next_device = self.next_device, self.next_device + n
        return _objects([f"dev-{(i * _DEVICE_MUL + _DEVICE_ADD) & mask:012x}"
                         for i in range(start, start + n)])

    def ips(self, n: int) -> ObjectArray:
        start, self.next_ip = self.next_ip, self.next_ip + n
        out = []
        for i in range(start, start + n):
            x = (i * _IP_MUL + _IP_ADD) & 0xFFFFFFFF
            out.append(f"{x >> 24}.{(x >> 16) & 255}.{(x >> 8) & 255}.{x & 255}")
        return _objects(out)


def reader_id(terminal_id: int) -> str:
    """The card reader of a terminal: the device of its card-present payments."""
    return f"pos-{terminal_id:06d}"


@dataclass(frozen=True)
class RichWorld:
    """Who owns which devices and addresses, where they live and travel, what terminals sell.

    Own devices and home addresses are in compressed sparse row form:
    customer ``c`` has ``devices[device_offsets[c]:device_offsets[c + 1]]``.
    ``trip_of[c, d]`` is the trip customer ``c`` is on during day ``d``
    (an index into the ``trip_*`` arrays), -1 at home.
    """

    home_country: IntArray
    app_share: npt.NDArray[np.float64]
    device_offsets: IntArray
    devices: ObjectArray
    ip_offsets: IntArray
    ips: ObjectArray
    terminal_category: IntArray
    readers: ObjectArray
    trip_of: npt.NDArray[np.int32]
    trip_customer: IntArray
    trip_start: IntArray
    trip_country: IntArray
    trip_ip: ObjectArray

    def countries_seen(self, customer: int, day: int) -> set[int]:
        """Countries the card may have been used in by the end of ``day`` (home, trips begun)."""
        trips = (self.trip_customer == customer) & (self.trip_start <= day)
        return {int(self.home_country[customer]), *self.trip_country[trips].tolist()}

    def terminals_in(self, categories: Sequence[str]) -> IntArray:
        """Terminals of these categories (all terminals if none is)."""
        codes = [MERCHANT_CATEGORIES.index(c) for c in categories]
        found = np.flatnonzero(np.isin(self.terminal_category, codes))
        return found if len(found) else np.arange(len(self.terminal_category))


def _offsets(counts: IntArray) -> IntArray:
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def generate_world(config: SimulationConfig, rich: RichMode, population: Population,
                   ids: Ids) -> RichWorld:
    """Customers' devices, addresses, home countries and trips; terminals' categories."""
    rng = stream(config.seed, Stream.RICH_POPULATION)
    n_customers, n_days = len(population.customers), config.n_days
    home_country = rng.choice(len(HOME_COUNTRIES), size=n_customers, p=HOME_WEIGHTS)
    app_share = rng.random(n_customers)
    n_devices = 1 + (rng.random(n_customers) < rich.second_device_share).astype(np.int64)
    n_ips = rng.integers(1, rich.max_home_ips + 1, size=n_customers)
    terminal_category = rng.choice(len(MERCHANT_CATEGORIES), size=len(population.terminals),
                                   p=CATEGORY_WEIGHTS)

    trip_customer, trip_start = np.nonzero(rng.random((n_customers, n_days)) < rich.travel_rate)
    n_trips = len(trip_customer)
    lengths = 1 + rng.poisson(rich.trip_days_mean - 1, size=n_trips)
    # Uniform over the countries other than home.
    other = rng.integers(0, len(COUNTRIES) - 1, size=n_trips)
    trip_country = other + (other >= home_country[trip_customer])
    trip_of = np.full((n_customers, n_days), -1, dtype=np.int32)
    for trip in range(n_trips):  # a few thousand; a later trip overrides an overlapping one
        customer, start = trip_customer[trip], trip_start[trip]
        trip_of[customer, start:start + lengths[trip]] = trip

    devices = ids.devices(int(n_devices.sum()))
    home_ips = ids.ips(int(n_ips.sum()))
    trip_ips = ids.ips(n_trips)
    return RichWorld(
        home_country=home_country.astype(np.int64),
        app_share=app_share,
        device_offsets=_offsets(n_devices),
        devices=devices,
        ip_offsets=_offsets(n_ips.astype(np.int64)),
        ips=home_ips,
        terminal_category=terminal_category.astype(np.int64),
        readers=_objects([reader_id(t) for t in range(len(population.terminals))]),
        trip_of=trip_of,
        trip_customer=trip_customer.astype(np.int64),
        trip_start=trip_start.astype(np.int64),
        trip_country=trip_country.astype(np.int64),
        trip_ip=trip_ips,
    )


@dataclass
class RichColumns:
    """The rich fields, row-aligned with a :class:`~rtml_simulator.table.Transactions`.

    Object arrays of ``str`` (``ip_address`` holds ``None`` for card-present
    payments); categorical values are the schema's category names.
    """

    device_id: ObjectArray
    ip_address: ObjectArray
    merchant_category: ObjectArray
    country: ObjectArray
    channel: ObjectArray

    def __len__(self) -> int:
        return len(self.device_id)

    def take(self, index: npt.NDArray[np.intp]) -> RichColumns:
        return RichColumns(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concat(parts: Sequence[RichColumns]) -> RichColumns:
        return RichColumns(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                              for f in fields(RichColumns)})

    @staticmethod
    def of(*, device_id: ObjectArray, ip_address: ObjectArray, category: IntArray,
           country: IntArray, channel: IntArray) -> RichColumns:
        """From category / country / channel codes."""
        return RichColumns(device_id=device_id, ip_address=ip_address,
                           merchant_category=codes_to_strings(category, MERCHANT_CATEGORIES),
                           country=codes_to_strings(country, COUNTRIES),
                           channel=codes_to_strings(channel, CHANNELS))


def genuine_fields(config: SimulationConfig, rich: RichMode, world: RichWorld,
                   tx: Transactions, ids: Ids) -> RichColumns:
    """Rich fields of existing payments (genuine or not), a fixed number of draws per row."""
    rng = stream(config.seed, Stream.RICH_TRANSACTIONS)
    n = len(tx)
    customer, terminal, day = tx.customer_id, tx.terminal_id, tx.day
    category = world.terminal_category[terminal]
    online = rng.random(n) < ONLINE_SHARE[category]
    app = rng.random(n) < world.app_share[customer]
    device_draw = rng.random(n)
    one_off = online & (rng.random(n) < rich.new_device_rate)
    ip_draw = rng.random(n)

    channel = np.where(online, np.where(app, APP, WEB), POS)
    n_devices = np.diff(world.device_offsets)[customer]
    own = np.where(app, 0, (device_draw * n_devices).astype(np.int64))
    device = world.devices[world.device_offsets[customer] + own]
    device[~online] = world.readers[terminal[~online]]
    device[one_off] = ids.devices(int(one_off.sum()))

    n_ips = np.diff(world.ip_offsets)[customer]
    ip = world.ips[world.ip_offsets[customer] + (ip_draw * n_ips).astype(np.int64)]
    trip = world.trip_of[customer, day]
    abroad = trip >= 0
    ip[abroad] = world.trip_ip[trip[abroad]]
    ip[~online] = None
    country = np.where(abroad, world.trip_country[np.maximum(trip, 0)],
                       world.home_country[customer])
    return RichColumns.of(device_id=device, ip_address=ip, category=category, country=country,
                          channel=channel)
