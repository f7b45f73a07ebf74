"""Redis backend: one hash per (feature set version, entity), with a TTL.

Key: ``rtml:fs:{feature set}:{version}:{entity}:{entity id}``; fields: the
entity's feature names plus ``_as_of_ms`` and ``_tx`` (the event the values
were computed at). Values are written as ``repr(float)`` text, which
round-trips exactly, so what the decision API reads is bit-identical to
what the pipeline computed.

Writes are one Lua script call (``EVALSHA``) per chunk of up to 256 entities,
all chunks of a call in one pipeline: one round trip, one reply per chunk. The
script does each key's HSET and EXPIRE server side. It replaced one HSET (+ an
EXPIRE when this process had not renewed the key lately) per entity, whose
building, packing and reply parsing in redis-py cost the feature worker ~10 µs
of Python per entity, about a quarter of its CPU; see :mod:`.bulk_write` for the
argument layout, the costs and why values are formatted in bulk. The TTL is
renewed by every write (an EXPIRE in the script), so Python keeps no renewal
bookkeeping.
All keys of a chunk go into one script call on a single Redis instance; on a
Redis Cluster (a ``redis+cluster://`` URL, :mod:`.connection`) a call holds the
keys of one slot only, so the writer groups them by slot (see
:class:`~.bulk_write.BulkWriter`). The keys are the same in both modes (one key
per entity: nothing to keep together).

Reads use one pipeline of HGETALLs (on a cluster: one per node, in parallel).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import redis

from rtml_features.definitions import FeatureSet
from rtml_features.online_store.base import EntityValues, OnlineStore
from rtml_features.online_store.redis.bulk_write import BulkWriter, command_packer
from rtml_features.online_store.redis.connection import (
    CLUSTER_TRANSIENT,
    Client,
    as_outage,
    connect,
    is_cluster_url,
)

AS_OF_FIELD = "_as_of_ms"
TRANSACTION_FIELD = "_tx"


def entity_key(feature_set: FeatureSet, entity: str, entity_id: str) -> str:
    """The Redis key of one entity's hash."""
    return f"{key_prefix(feature_set)}{entity}:{entity_id}"


def key_prefix(feature_set: FeatureSet) -> str:
    """What every :func:`entity_key` of ``feature_set`` starts with (its name and version)."""
    return f"rtml:fs:{feature_set.name}:{feature_set.version}:"


class RedisOnlineStore(OnlineStore):
    """Online store on a Redis server (``redis://``) or a Redis Cluster (``redis+cluster://``)."""

    def __init__(self, url: str, ttl_s: int, socket_timeout_s: float = 1.0) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.ttl_s = ttl_s
        self.client: Client = (
            connect(url, socket_timeout=socket_timeout_s) if is_cluster_url(url)
            else redis.Redis.from_url(url, socket_timeout=socket_timeout_s,
                                      command_packer=command_packer()))
        self._writer = BulkWriter(self.client)

    def write(self, feature_set: FeatureSet, updates: Sequence[EntityValues]) -> None:
        self.begin_write(feature_set, updates)()

    def begin_write(self, feature_set: FeatureSet,
                    updates: Sequence[EntityValues]) -> Callable[[], None]:
        """Send the write now, read Redis's replies in the waiter (see :class:`BulkWriter`)."""
        return self._writer.begin(key_prefix(feature_set), updates, self.ttl_s,
                                  AS_OF_FIELD, TRANSACTION_FIELD)

    def read(
        self, feature_set: FeatureSet, entities: Sequence[tuple[str, str]]
    ) -> list[EntityValues | None]:
        pipe = self.client.pipeline(transaction=False)
        for entity, entity_id in entities:
            pipe.hgetall(entity_key(feature_set, entity, entity_id))
        try:
            replies = pipe.execute()
        except CLUSTER_TRANSIENT as error:  # a cluster mid-failover: an outage, as elsewhere
            raise as_outage(error) from error
        results: list[EntityValues | None] = []
        for (entity, entity_id), raw in zip(entities, replies, strict=True):
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
