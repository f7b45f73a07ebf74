"""The request path of any feature set but the classic ones over the handbook's schema.

The handbook's classic sets keep their own path (:mod:`rtml_decision.request_store`'s
prefix logs, :mod:`rtml_decision.request_features`), tuned for their latency. Every
other set is served from the generic request-time layout the feature pipeline's
:class:`~rtml_features.online_store.redis.generic_writer.GenericOnlineWriter` keeps
(:mod:`rtml_features.online_store.redis.generic_layout`), with the same guarantees:

* **one round trip**: :data:`GENERIC_LOOKUP_AND_CLAIM` reads the idempotency
  record and, when there is none, claims the transaction id and runs
  ``rtml_read_generic`` (:data:`~rtml_features.online_store.redis.generic_reader.READ_LUA`)
  over every entity the request has an id for — compound entities included
  (:meth:`Entity.id_of`); queued decision writes ride along as on the classic path;
* **the batch engine's values**: :class:`~rtml_features.request_generic.GenericRequestVectors`
  over that reply, at the request's event time, the request itself counted
  once (whether or not the stream applied it already);
* **idempotency over the schema**: :func:`schema_fingerprint` covers every
  declared field but the id (an absent optional field and its default alike,
  timestamps as instants);
* the transaction is published on the schema's topic, keyed by its partition
  key, with its generated model's headers (:mod:`rtml_decision.outputs`).

**Not given** (documented in docs/decision.md): the consistency markers
(``rtml_seen_events_<e>`` / ``rtml_seen_labels_<e>``) — the generic layout keeps
no per-horizon counts the monitor's lag classes are defined over, so decisions of
a generic set log none and the consistency monitor compares their features
without telling lag from inconsistency. On a Redis Cluster the claim and the
reads are two round trips (the claim, then one script per entity in per-node
pipelines), not one.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from rtml_common.events import Event
from rtml_common.schema import EventSchema, FieldType
from rtml_decision.request_store import (
    ANY_REDIS_FAILURE,
    CLAIM,
    COOLDOWN_S,
    FINGERPRINT_BYTES,
    PENDING,
    PENDING_TTL_MS,
    RedisUnavailable,
    RequestStore,
    Stored,
    decision_key,
)
from rtml_features.definitions import FeatureSet
from rtml_features.online_store.redis.connection import Client, as_outage, is_cluster
from rtml_features.online_store.redis.generic_reader import READ_LUA, GenericReader
from rtml_features.request_generic import EntityRead
from rtml_features.rows import epoch_ms

#: KEYS[1] the idempotency record, KEYS[2..] the entities' generic keys; ARGV the marker,
#: its TTL (ms), then the entities' segments (:meth:`GenericReader.entity_args`).
#: Returns {stored} when a decision (or a pending claim) exists, else {false, reads}.
GENERIC_LOOKUP_AND_CLAIM = READ_LUA + """
local stored = redis.call('GET', KEYS[1])
if stored then return {stored} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {false, rtml_read_generic(2, 3)}
"""


def request_event(tx: Event, schema: EventSchema) -> dict[str, Any]:
    """The request as the generic layout's engines take it: every declared field by
    name, timestamps as epoch ms (:func:`epoch_ms`, as the pipeline stores them), an
    absent optional field as None."""
    event: dict[str, Any] = {}
    for field in schema.fields:
        value = getattr(tx, field.name)
        if field.type is FieldType.TIMESTAMP and isinstance(value, datetime):
            value = epoch_ms(value)
        event[field.name] = value
    return event


def schema_fingerprint(event: dict[str, Any], schema: EventSchema) -> bytes:
    """What identifies a request of ``schema`` besides its id: every other declared
    field (of :func:`request_event`: timestamps as instants), 16 bytes of BLAKE2b."""
    values = [event[name] for name in schema.names if name != schema.id_field]
    return hashlib.blake2b(orjson.dumps(values), digest_size=FINGERPRINT_BYTES).digest()


@dataclass(frozen=True, slots=True)
class GenericLookup:
    """A stored decision (or a concurrent claim), or our claim and each entity's read."""

    stored: Stored | None
    #: entity name -> what the read fetched; an entity the request has no id for is absent.
    reads: dict[str, EntityRead]


class GenericRequestStore(RequestStore):
    """Idempotency records and generic-layout reads for any feature set, one round trip.

    Decision writes, their batching, the circuit breaker and ``wait_for_decision``
    are :class:`RequestStore`'s.
    """

    def __init__(self, client: Client, feature_set: FeatureSet, ttl_s: int) -> None:
        # not RequestStore.__init__: its prefix-log reader serves classic sets only
        self.client = client
        self.feature_set = feature_set
        self.ttl_s = ttl_s
        self.generic_reader = GenericReader(client, feature_set)
        self.cluster = is_cluster(client)
        self._lookup = client.register_script(GENERIC_LOOKUP_AND_CLAIM)
        self._claim_sha = hashlib.sha1(CLAIM.encode()).hexdigest()
        self._down_until = 0.0
        self._queue: list[tuple[str, bytes]] = []
        self._timer = None
        self._closed = False

    def lookup_event(self, transaction_id: str, request_fingerprint: bytes,
                     event: dict[str, Any]) -> GenericLookup:
        """The stored decision, or our claim (carrying ``request_fingerprint``) and every
        entity's read for ``event`` (:func:`request_event`)."""
        reader = self.generic_reader
        calls, asked = reader.calls(event)
        t = int(event[self.feature_set.schema.event_time])
        if self.cluster:
            return self._cluster_event_lookup(transaction_id, request_fingerprint, event, t)
        keys = [key for k, _ in calls for key in k]
        args = [arg for _, a in calls for arg in a]
        reply = self._call([decision_key(transaction_id), *keys],
                           [PENDING + request_fingerprint, PENDING_TTL_MS, *args])
        if reply[0] is not None:
            return GenericLookup(Stored.parse(bytes(reply[0])), {})
        return GenericLookup(None, {plan.spec.entity.name: reader.parse(plan, entity, t)
                                    for plan, entity in zip(asked, reply[1], strict=True)})

    def _cluster_event_lookup(self, transaction_id: str, request_fingerprint: bytes,
                              event: dict[str, Any], t: int) -> GenericLookup:
        """On a Redis Cluster: the claim (with the queued writes), then the reads."""
        if time.monotonic() < self._down_until:
            raise RedisUnavailable("redis failed less than a cool-down ago")
        try:
            pipe = self._writes()
            pipe.eval(CLAIM, 1, decision_key(transaction_id), PENDING + request_fingerprint,
                      PENDING_TTL_MS)
            replies = pipe.execute(raise_on_error=False)
            self._log_failed_writes(replies[:-1])
            claim = replies[-1]
            if isinstance(claim, Exception):
                raise claim
            if claim is not None:
                return GenericLookup(Stored.parse(bytes(claim)), {})
            reads = self.generic_reader.read(event)
        except ANY_REDIS_FAILURE as error:
            self._down_until = time.monotonic() + COOLDOWN_S
            outage = as_outage(error)
            if outage is error:
                raise
            raise outage from error
        return GenericLookup(None, reads)
