"""Shadow isolation: count a shadow's failures and detach it after too many in a row.

A shadow (challenger) is only observed, so it must never cost the champion
anything but bounded time. The scorer runs each shadow batch inside
:meth:`ShadowGuard.run`-style bookkeeping: an exception, a non-finite or
out-of-range score, or a batch slower than the latency budget is a failure;
``limit`` consecutive failures detach that (alias, version). It stays
detached until a ``model-events`` record names its alias or version (the
operator fixed or replaced it) — a new version under the alias is a new key
anyway, so it starts attached.

Thread-safety: the scoring loop records outcomes while the model-events
thread may re-attach, so state changes take a lock (a few per batch).

>>> guard = ShadowGuard(limit=2)
>>> guard.failure(("shadow", "3"), "error"), guard.failure(("shadow", "3"), "nan")
(False, True)
>>> key = ("shadow", "3")
>>> guard.is_detached(key), guard.reattach(alias="shadow"), guard.is_detached(key)
(True, 1, False)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

#: (alias, version) of one served shadow.
ShadowKey = tuple[str, str]


@dataclass
class ShadowHealth:
    """Failure bookkeeping of one shadow (alias, version)."""

    consecutive_failures: int = 0
    total_failures: int = 0
    detached: bool = False
    last_reason: str = ""


class ShadowGuard:
    """Consecutive-failure counting and detaching, per (alias, version)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._health: dict[ShadowKey, ShadowHealth] = {}
        self._lock = threading.Lock()

    def health(self, key: ShadowKey) -> ShadowHealth:
        """A copy of the bookkeeping of ``key``."""
        with self._lock:
            state = self._health.get(key, ShadowHealth())
            return ShadowHealth(**vars(state))

    def is_detached(self, key: ShadowKey) -> bool:
        state = self._health.get(key)  # a dict read is atomic; no lock on the hot path
        return state is not None and state.detached

    def success(self, key: ShadowKey) -> None:
        state = self._health.get(key)
        if state is not None and state.consecutive_failures:
            with self._lock:
                state.consecutive_failures = 0

    def failure(self, key: ShadowKey, reason: str) -> bool:
        """Record one failure; True when this one detached the shadow."""
        with self._lock:
            state = self._health.setdefault(key, ShadowHealth())
            state.consecutive_failures += 1
            state.total_failures += 1
            state.last_reason = reason
            if not state.detached and state.consecutive_failures >= self.limit:
                state.detached = True
                return True
            return False

    def reattach(self, alias: str | None = None, version: str | None = None) -> int:
        """Give shadows matching ``alias`` or ``version`` a fresh start; returns how many."""
        with self._lock:
            matched = 0
            for (key_alias, key_version), state in self._health.items():
                if (alias is not None and key_alias == alias) or (
                        version is not None and key_version == version):
                    if state.detached:
                        matched += 1
                    state.detached = False
                    state.consecutive_failures = 0
            return matched

    def detached(self) -> list[ShadowKey]:
        """The detached shadows, sorted."""
        with self._lock:
            return sorted(key for key, state in self._health.items() if state.detached)
