"""Which transactions a shadow model scores: a deterministic, per-alias sample.

A transaction is in the sample of shadow ``alias`` when
``blake2b(alias, transaction_id) mod 10,000 < percent * 100``. Why a hash and
not a random draw: every scorer process (and every replay of the same
records after a crash or a rebalance) takes the same decision for the same
transaction, so a shadow's outputs never depend on which process scored it,
and the auditor can compare champion and shadow on exactly the same
transactions. Why the alias in the hash: two shadows at 10 % see different,
independent samples rather than the same 10 %.

>>> sampler = ShadowSampler(50.0)
>>> sampler.selected("shadow-a", "tx-1") == sampler.selected("shadow-a", "tx-1")
True
>>> ShadowSampler(0.0).indices("shadow-a", ["t1", "t2"]), ShadowSampler(100).indices("x", ["t1"])
([], [0])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from hashlib import blake2b

#: Resolution of the percentage: 0.01 %.
BUCKETS = 10_000


def bucket(alias: str, transaction_id: str) -> int:
    """The transaction's bucket in ``[0, BUCKETS)`` for ``alias`` (stable across processes)."""
    digest = blake2b(transaction_id.encode(), digest_size=8, key=alias.encode()[:64]).digest()
    return int.from_bytes(digest, "big") % BUCKETS


class ShadowSampler:
    """Per-alias sampling percentages; one default for aliases not listed."""

    def __init__(self, default_percent: float, percents: Mapping[str, float] | None = None
                 ) -> None:
        self.default_percent = default_percent
        self.percents = dict(percents or {})

    def percent(self, alias: str) -> float:
        return self.percents.get(alias, self.default_percent)

    def selected(self, alias: str, transaction_id: str) -> bool:
        """Whether shadow ``alias`` scores this transaction."""
        return bucket(alias, transaction_id) < round(self.percent(alias) * BUCKETS / 100)

    def indices(self, alias: str, transaction_ids: Sequence[str]) -> list[int]:
        """Positions of the sampled transactions (all or none without hashing at 100 / 0 %)."""
        percent = self.percent(alias)
        if percent >= 100:
            return list(range(len(transaction_ids)))
        if percent <= 0:
            return []
        threshold = round(percent * BUCKETS / 100)
        return [i for i, tx in enumerate(transaction_ids) if bucket(alias, tx) < threshold]
