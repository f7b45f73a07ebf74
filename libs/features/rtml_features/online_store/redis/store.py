"""Redis backend: one hash per (feature set version, entity), with a TTL.

Key: ``rtml:fs:{feature set}:{version}:{entity}:{entity id}``; fields: the
entity's feature names plus ``_as_of_ms`` and ``_tx`` (the event the values
were computed at). Values are written as ``repr(float)`` text, which
round-trips exactly, so what the decision API reads is bit-identical to
what the pipeline computed.

Writes go through one non-transactional pipeline per call: a batch of 500
transactions is one round trip. Each write is an HSET; the EXPIRE that
renews the TTL is sent only when this process has not renewed that key in
the last ``ttl_refresh_s`` seconds — the TTL is weeks long, and skipping the
redundant EXPIREs halves the commands Python has to build (building commands
is where a Redis-writing worker spends its time). Reads use one pipeline of
HGETALLs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

from rtml_features.definitions import FeatureSet
from rtml_features.online_store.base import EntityValues, OnlineStore

AS_OF_FIELD = "_as_of_ms"
TRANSACTION_FIELD = "_tx"


def entity_key(feature_set: FeatureSet, entity: str, entity_id: str) -> str:
    """The Redis key of one entity's hash."""
    return f"rtml:fs:{feature_set.name}:{feature_set.version}:{entity}:{entity_id}"


class RedisOnlineStore(OnlineStore):
    """Online store on a Redis server (``redis://`` URL)."""

    def __init__(self, url: str, ttl_s: int, socket_timeout_s: float = 1.0,
                 ttl_refresh_s: float = 60.0) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.ttl_s = ttl_s
        self.ttl_refresh_s = min(ttl_refresh_s, ttl_s / 2)
        self.client = redis.Redis.from_url(url, socket_timeout=socket_timeout_s)
        self._renewed: dict[str, float] = {}

    def write(self, feature_set: FeatureSet, updates: Sequence[EntityValues]) -> None:
        if not updates:
            return
        pipe = self.client.pipeline(transaction=False)
        ttl = self.ttl_s
        now = time.monotonic()
        renewed = self._renewed
        stale_before = now - self.ttl_refresh_s
        for update in updates:
            key = entity_key(feature_set, update.entity, update.entity_id)
            mapping: dict[str, str] = {name: repr(value) for name, value in update.values.items()}
            mapping[AS_OF_FIELD] = str(update.as_of_ms)
            mapping[TRANSACTION_FIELD] = update.transaction_id
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
            if renewed.get(key, stale_before - 1) < stale_before:
                pipe.expire(key, ttl)
                renewed[key] = now
        pipe.execute()
        if len(renewed) > 1_000_000:  # bound memory: forget renewals older than the window
            self._renewed = {k: t for k, t in renewed.items() if t >= stale_before}

    def read(
        self, feature_set: FeatureSet, entities: Sequence[tuple[str, str]]
    ) -> list[EntityValues | None]:
        pipe = self.client.pipeline(transaction=False)
        for entity, entity_id in entities:
            pipe.hgetall(entity_key(feature_set, entity, entity_id))
        results: list[EntityValues | None] = []
        for (entity, entity_id), raw in zip(entities, pipe.execute(), strict=True):
            if not raw:
                results.append(None)
                continue
            fields = {k.decode(): v.decode() for k, v in raw.items()}
            as_of = int(fields.pop(AS_OF_FIELD))
            transaction_id = fields.pop(TRANSACTION_FIELD)
            results.append(EntityValues(entity, entity_id,
                                        {k: float(v) for k, v in fields.items()},
                                        as_of, transaction_id))
        return results

    def close(self) -> None:
        self.client.close()
