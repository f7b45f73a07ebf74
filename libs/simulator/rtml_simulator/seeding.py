"""Independent, named random streams derived from one seed.

Each part of the process (customer profiles, terminal profiles, genuine
transactions, each fraud scenario, each drift pattern) draws from its own
stream, keyed by a fixed number. Why: turning on a drift pattern, or adding
a new stream later, must not change what the other parts draw, so a run with
``--card-testing-from 90`` is the baseline run plus card-testing payments,
not a different data set. Streams come from :class:`numpy.random.SeedSequence`
``spawn_key``s, which are statistically independent by construction.

>>> a = stream(0, Stream.CUSTOMERS).random(3)
>>> b = stream(0, Stream.CUSTOMERS).random(3)
>>> bool((a == b).all()), bool((a == stream(0, Stream.TERMINALS).random(3)).any())
(True, False)
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    """Stream keys. Never renumber: that would change every data set."""

    CUSTOMERS = 1
    TERMINALS = 2
    TRANSACTIONS = 3
    SCENARIO_2 = 12
    SCENARIO_3 = 13
    CARD_TESTING = 24
    ACCOUNT_TAKEOVER = 25
    DEVICE_TESTING = 26
    RICH_POPULATION = 31
    RICH_TRANSACTIONS = 32


def stream(seed: int, key: Stream) -> np.random.Generator:
    """A fresh generator for ``key``'s stream of run ``seed``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(key,))))
