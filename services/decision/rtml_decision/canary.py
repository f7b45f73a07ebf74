"""Canary / A-B routing: a deterministic hash of a request key into weighted arms.

Why a hash and not a random draw: a retried request, a replayed log and
another replica must all put the same key on the same arm, and keying by
customer keeps one customer's experience consistent. BLAKE2b is used for
its uniformity (Python's ``hash`` is salted per process).

>>> router = CanaryRouter({"champion": 95, "challenger": 5})
>>> router.arm("customer-42") == router.arm("customer-42")
True
>>> CanaryRouter({}).arm("anything")
'champion'
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Mapping

from rtml_models.aliases import CHAMPION

_SCALE = float(1 << 64)


def unit_hash(key: str) -> float:
    """A uniform number in [0, 1) from ``key``, the same in every process."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


class CanaryRouter:
    """Maps a key to an arm (a model alias) with probability proportional to its weight."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        arms = [(arm, float(w)) for arm, w in sorted(weights.items()) if w > 0]
        total = sum(w for _, w in arms)
        self.arms = [arm for arm, _ in arms] or [CHAMPION]
        bounds: list[float] = []
        running = 0.0
        for _, weight in arms:
            running += weight / total
            bounds.append(running)
        self._bounds = bounds[:-1]  # the last arm takes everything above the others

    @property
    def splits(self) -> bool:
        """True when more than one arm receives traffic."""
        return len(self.arms) > 1

    def arm(self, key: str) -> str:
        """The arm of ``key`` (the champion when no split is configured)."""
        if len(self.arms) == 1:
            return self.arms[0]
        return self.arms[bisect_right(self._bounds, unit_hash(key))]
