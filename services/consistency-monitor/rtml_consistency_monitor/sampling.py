"""Which entities are watched: a keyed hash of the entity, never a coin per decision.

Sampling decisions at random would leave every sampled decision with an
incomplete history: its customer's other transactions would be sampled out,
and the windows could not be re-computed. Sampling *entities* keeps the whole
history of a watched customer (or terminal), so every one of its decisions can
be checked, at a memory cost proportional to the rate.

The hash is BLAKE2b keyed with ``RTML_CONSISTENCY_MONITOR_SAMPLE_KEY`` over
``<entity kind> NUL <entity id>``: the kind is part of it so the customer and
terminal samples are independent (a terminal and a customer sharing an id
are not watched together by construction), the key so that which ids are
watched does not follow from the ids. The first 8 bytes, read as an unsigned
integer, are compared with ``rate * 2**64``: deterministic across processes
and restarts (unlike Python's ``hash``), and exactly the rate in expectation.
"""

from __future__ import annotations

from hashlib import blake2b

_SCALE = 2**64


class EntitySampler:
    """``sampled(kind, entity_id)``: whether that entity's decisions are checked."""

    def __init__(self, rate: float, key: str) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"sample rate {rate} is not in [0, 1]")
        self.rate = rate
        self._key = key.encode()
        self._threshold = int(rate * _SCALE)
        self._cache: dict[tuple[str, str], bool] = {}

    def point(self, kind: str, entity_id: str) -> float:
        """The entity's position in [0, 1): sampled when it is below the rate."""
        return self._hash(kind, entity_id) / _SCALE

    def _hash(self, kind: str, entity_id: str) -> int:
        digest = blake2b(f"{kind}\x00{entity_id}".encode(), digest_size=8, key=self._key)
        return int.from_bytes(digest.digest(), "big")

    def sampled(self, kind: str, entity_id: str | None) -> bool:
        if entity_id is None:
            return False
        if self.rate >= 1.0:
            return True
        cache_key = (kind, entity_id)
        found = self._cache.get(cache_key)
        if found is None:
            found = self._hash(kind, entity_id) < self._threshold
            if len(self._cache) >= 1_000_000:  # bounded: ids are unbounded over time
                self._cache.clear()
            self._cache[cache_key] = found
        return found
