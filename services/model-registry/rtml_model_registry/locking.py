"""One lock per model, so alias changes and their events never interleave within a model.

Changing an alias reads its current value, runs the gate, moves it, appends
the audit entry and publishes the event; two such changes of one model must
not interleave or the audit's ``from_version`` and the event order would lie.
Different models don't wait for each other (a gate run takes seconds).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class KeyedLocks:
    """``with locks.hold("fraud-detector"): ...`` serialises work per key."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield
