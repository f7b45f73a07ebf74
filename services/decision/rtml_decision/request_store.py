"""Everything the request path reads from or writes to Redis, in as few round trips as possible.

One pipeline per request reads the idempotency record *and* the entities'
online feature hashes (keys of :mod:`rtml_features.online_store.redis.store`,
so the API reads exactly what the feature pipeline wrote); a second command
(``SET NX`` with a TTL) claims the transaction id once the decision is made.

Why the client is built here and not shared with the online store: the
request path needs a socket timeout bounded by the request budget and no
automatic retries (redis-py retries by default, which would multiply the
time a dead Redis costs); on any Redis error the caller answers degraded.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rtml_features.definitions import FeatureSet
from rtml_features.online_store.redis.store import AS_OF_FIELD, TRANSACTION_FIELD, entity_key

#: Prefix of the idempotency records (one per transaction id).
DECISION_KEY_PREFIX = "rtml:decision:"
_META_FIELDS = {AS_OF_FIELD.encode(), TRANSACTION_FIELD.encode()}

RedisError = redis.RedisError


@dataclass(frozen=True, slots=True)
class Lookup:
    """What Redis knows about a request: a stored decision, and each entity's features."""

    stored: bytes | None
    #: entity name -> feature values, None when the store has never seen the entity.
    entities: dict[str, dict[str, float] | None]


def decision_key(transaction_id: str) -> str:
    return DECISION_KEY_PREFIX + transaction_id


class RequestStore:
    """Idempotency records and online-feature reads for one feature set."""

    def __init__(self, client: redis.Redis, feature_set: FeatureSet, ttl_s: int) -> None:
        self.client = client
        self.feature_set = feature_set
        self.ttl_s = ttl_s
        #: (entity name, request field holding its id), e.g. ("terminal", "terminal_id").
        self.entities = [(entity.name, entity.key) for entity in feature_set.entities]

    @classmethod
    def from_url(cls, url: str, feature_set: FeatureSet, ttl_s: int,
                 timeout_s: float) -> RequestStore:
        """A store whose every command fails within ``timeout_s`` instead of retrying."""
        client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                      socket_connect_timeout=timeout_s,
                                      retry=Retry(NoBackoff(), 0))
        return cls(client, feature_set, ttl_s)

    def lookup(self, transaction_id: str, ids: dict[str, str | None]) -> Lookup:
        """One round trip: the stored decision (if any) and every entity's hash.

        ``ids`` maps a request field (``customer_id``) to its value; an entity
        whose id is absent (no terminal) is reported as unknown.
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.get(decision_key(transaction_id))
        asked: list[str] = []
        for name, field in self.entities:
            entity_id = ids.get(field)
            if entity_id is not None:
                pipe.hgetall(entity_key(self.feature_set, name, entity_id))
                asked.append(name)
        replies = pipe.execute()
        entities: dict[str, dict[str, float] | None] = {name: None for name, _ in self.entities}
        for name, raw in zip(asked, replies[1:], strict=True):
            if raw:
                entities[name] = {key.decode(): float(value) for key, value in raw.items()
                                  if key not in _META_FIELDS}
        return Lookup(replies[0], entities)

    def claim(self, transaction_id: str, payload: bytes) -> bytes | None:
        """Store ``payload`` unless a decision exists; None if we won, else the winner's."""
        key = decision_key(transaction_id)
        if self.client.set(key, payload, nx=True, ex=self.ttl_s):
            return None
        existing = self.client.get(key)
        return existing if isinstance(existing, bytes) else None

    def close(self) -> None:
        self.client.close()
