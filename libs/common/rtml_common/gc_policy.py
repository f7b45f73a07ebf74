"""Keep CPython's cyclic garbage collector from stalling a service that holds growing state.

A streaming worker keeps hundreds of thousands of long-lived objects (window
contents per entity) and adds more every second. CPython's full (generation
2) collection walks *all* of them: in the feature worker at 2,000 tx/s each
one stopped the process for up to 166 ms, which was the whole p99 freshness
tail (the median batch took 7 ms).

:class:`SurvivorFreezer` moves the objects that survived a young collection
into the permanent generation (``gc.freeze()``) every ``interval_s``, so full
collections only ever scan what arrived since. Frozen objects are still freed
by reference counting the moment nothing refers to them; what freezing gives
up is collecting *reference cycles* among them. That is safe for state made
of acyclic containers (dicts, deques, tuples of numbers and strings) — the
feature state has a test that processing events creates no cyclic garbage —
and the young collection just before each freeze still reclaims the cycles
of short-lived request objects.

>>> freezer = SurvivorFreezer(interval_s=0.0)
>>> freezer.maybe_freeze()
True
>>> freezer.freezes
1
>>> import gc; gc.unfreeze()  # (a doctest leaves the interpreter as it found it)
"""

from __future__ import annotations

import gc
import time


class SurvivorFreezer:
    """Freezes survivors of a young collection at most once per ``interval_s``."""

    def __init__(self, interval_s: float = 5.0) -> None:
        if interval_s < 0:
            raise ValueError("interval_s must be >= 0")
        self.interval_s = interval_s
        self.freezes = 0
        self._last = time.monotonic()

    def maybe_freeze(self) -> bool:
        """Collect generations 0-1, then freeze what survived, if the interval passed.

        Costs a young collection (~1 ms); call it between batches, not inside one.
        """
        if time.monotonic() - self._last < self.interval_s:
            return False
        self.freeze()
        return True

    def freeze(self) -> None:
        """Collect generations 0-1 and freeze the survivors now (e.g. after restoring state)."""
        gc.collect(1)
        gc.freeze()
        self._last = time.monotonic()
        self.freezes += 1

    @staticmethod
    def frozen_objects() -> int:
        """Objects in the permanent generation (a gauge for memory investigations)."""
        return gc.get_freeze_count()
