"""Everything the request path reads from or writes to Redis: one round trip before deciding.

One Lua script per request (:data:`LOOKUP_AND_CLAIM`) reads the idempotency
record and, when there is none, *claims* the transaction id with a short-lived
``pending`` marker and reads, from each entity's prefix logs (the keys of
:mod:`rtml_features.online_store.redis.prefix_layout`, written by the feature
pipeline), the O(1) entries the request's window boundaries select
(:class:`~rtml_features.online_store.redis.prefix_reader.PrefixLogReader`,
whose ``rtml_read_entities`` runs inside this script). The reply becomes the
views :class:`~rtml_features.request_vector.RequestVectors` computes the
request's features from, at its event time (see
:mod:`rtml_decision.request_features`). Claiming before deciding is what makes one
round trip enough: a concurrent retry of the same transaction finds the
marker and waits for the winner's decision instead of deciding again. The
decision itself replaces the marker afterwards (:meth:`RequestStore.record`),
off the latency path.

**Same id, different request.** The claim and the stored decision carry a
:func:`fingerprint` of the request (every field but the id, 16 bytes of
BLAKE2b): a retry whose fingerprint differs is refused
(:class:`IdempotencyConflict`, a 409) instead of silently getting the first
request's decision. It rides in the same value, so the lookup is still one
round trip; values written before fingerprints existed (no prefix) are
served as before, without the check.

If the deciding process dies between claim and record, the marker expires
after :data:`PENDING_TTL_MS` and a later retry decides anew (the decision log's
key, the transaction id, absorbs the duplicate).

Why a *blocking* client called from the event loop: a loopback round trip
with redis-py's synchronous client costs ~30 µs of CPU and ~45 µs of wall
time, its asyncio client ~95 µs of CPU per command (measured, see
docs/benchmarks.md "Decision API") — at the rates this service targets, the
asyncio client would cost more loop time than the blocking wait it avoids.
What keeps a sick Redis from stalling the loop: the socket timeout is
bounded by the request budget, nothing retries (redis-py retries by default),
and after a failure the store answers "unavailable" at once for
:data:`COOLDOWN_S` (a circuit breaker) instead of blocking request after
request. Decisions are written in batches, never alone: they ride along with
the next request's lookup (same pipeline, same round trip) or, when no
request comes within :data:`WRITE_DELAY_S`, go in one pipeline of their own.
On any Redis error the caller answers degraded.

**On a Redis Cluster** (``RTML_REDIS_URL=redis+cluster://...``) the keys of one
request live in up to three slots — the idempotency record, the customer's logs
and the terminal's logs (an entity's three log keys share a hash tag, see
:mod:`rtml_features.online_store.redis.prefix_layout`) — so one script cannot
touch them all. The lookup is then :data:`CLAIM` on the record plus one
:data:`~rtml_features.online_store.redis.prefix_reader.READ_SCRIPT` per entity,
sent with the queued decision writes in one cluster pipeline: the client writes
every node's commands before reading any reply, so a decision still waits for
one round trip's time (to up to three nodes in parallel), at the price of up
to three commands where a single Redis runs one, and of the reads being done
even when a stored decision makes them useless. A redirected command
(``MOVED``/``ASK`` during a failover) or a failed connection is sent again a
bounded number of times (:data:`CLUSTER_LOOKUP_RETRIES`, within the socket
timeout each); beyond that the request is answered degraded as on a single
Redis. One dead node fails a lookup's whole pipeline, queued decision writes
to healthy nodes included: on a cluster those are queued again
(:meth:`RequestStore._requeue`). The single-server path is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import orjson
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError
from redis.retry import Retry

from rtml_common.events import Transaction
from rtml_features.definitions import FeatureSet
from rtml_features.online_store.redis.connection import (
    CLUSTER_TRANSIENT,
    Client,
    as_outage,
    connect,
    is_cluster,
    is_cluster_url,
    queue_script,
)
from rtml_features.online_store.redis.prefix_reader import (
    READ_ENTITY_LUA,
    READ_SCRIPT,
    EntityReadPlan,
    PrefixLogReader,
)
from rtml_features.request_vector import EntityLogs

logger = logging.getLogger(__name__)

#: Prefix of the idempotency records (one per transaction id).
DECISION_KEY_PREFIX = "rtml:decision:"
#: Value of a claimed transaction whose decision is not stored yet (never valid JSON),
#: followed by the claiming request's fingerprint.
PENDING = b"\x00pending"
#: Prefix of a stored decision: this byte, the request's fingerprint, then the body.
DECIDED = b"\x01"
FINGERPRINT_BYTES = 16
#: How long a claim may stay pending before a retry may decide again (the decider died).
PENDING_TTL_MS = 10_000
#: After a Redis failure, how long lookups fail fast instead of trying (circuit breaker).
COOLDOWN_S = 1.0
#: Longest a decision waits for a lookup to ride along with before it is written alone.
WRITE_DELAY_S = 0.005
#: How often a concurrent retry looks for the winner's decision.
POLL_INTERVAL_S = 0.002

#: KEYS[1] the idempotency record, KEYS[2..] the entities' prefix-log keys; ARGV the
#: marker, its TTL (ms), then the entities' read segments (:class:`PrefixLogReader`).
#: Returns {stored} when a decision (or a pending claim) exists, else {false, reads}.
LOOKUP_AND_CLAIM = READ_ENTITY_LUA + """
local stored = redis.call('GET', KEYS[1])
if stored then return {stored} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {false, rtml_read_entities(2, 3)}
"""

#: KEYS[1] the idempotency record; ARGV the marker and its TTL (ms). On a Redis Cluster,
#: where the entities' logs sit in other slots: the claim alone. Returns the stored
#: value, or nil once it claimed the transaction.
CLAIM = """
local stored = redis.call('GET', KEYS[1])
if stored then return stored end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""

#: Most decision writes a cluster failed to take kept for another attempt (see
#: :meth:`RequestStore._requeue`).
MAX_REQUEUED = 10_000

#: Retries of a cluster lookup after its first attempt (the cluster client's own: it
#: follows a failover's MOVED / refreshes its slot map between them).
CLUSTER_LOOKUP_RETRIES = 2

RedisError = redis.RedisError
#: Everything a Redis call may raise when Redis is unreachable or too slow (a cluster's
#: transient errors reach callers as ``redis.ConnectionError``, see :func:`as_outage`).
REDIS_FAILURES = (redis.RedisError, OSError)
#: What a cluster client may raise besides (turned into ``redis.ConnectionError`` here).
ANY_REDIS_FAILURE: tuple[type[BaseException], ...] = (*REDIS_FAILURES, *CLUSTER_TRANSIENT)


class RedisUnavailable(redis.ConnectionError):
    """Redis failed less than :data:`COOLDOWN_S` ago: not tried again yet."""


class DecisionInProgress(Exception):
    """A concurrent request holds the claim and did not store its decision in time."""


class IdempotencyConflict(Exception):
    """The transaction id was claimed or decided for a request with other fields."""


def fingerprint(tx: Transaction) -> bytes:
    """What identifies a request besides its id: every other field of the transaction.

    ``event_time`` as an instant (the same time in another offset is the
    same request). ~1 µs.
    """
    fields = (tx.customer_id, tx.terminal_id, tx.amount, tx.event_time.timestamp(),
              tx.currency)
    return hashlib.blake2b(orjson.dumps(fields), digest_size=FINGERPRINT_BYTES).digest()


@dataclass(frozen=True, slots=True)
class Stored:
    """An idempotency record: whose request it is, and its decision unless still pending."""

    #: None for a record written before fingerprints (accepted without a check).
    fingerprint: bytes | None
    #: The decision's response body; None while the claim is pending.
    body: bytes | None

    @classmethod
    def parse(cls, raw: bytes) -> Stored:
        if raw.startswith(PENDING):
            return cls(raw[len(PENDING):] or None, None)
        if raw.startswith(DECIDED):
            end = len(DECIDED) + FINGERPRINT_BYTES
            return cls(raw[len(DECIDED):end], raw[end:])
        return cls(None, raw)

    def conflicts_with(self, fingerprint: bytes) -> bool:
        return self.fingerprint is not None and self.fingerprint != fingerprint


@dataclass(frozen=True, slots=True)
class Lookup:
    """What Redis knows about a request: a stored decision, and each entity's logs.

    ``stored`` is None when this request claimed the transaction (it must
    decide and :meth:`RequestStore.record`), else the record found: a
    concurrent request's pending claim (``body`` None) or a stored decision.
    """

    stored: Stored | None
    #: entity name -> (event-log view, label-log view) at the request's boundaries, each
    #: None when the store holds no such log; an entity the request has no id for is
    #: absent. Empty when ``stored`` is set.
    entities: EntityLogs


def decision_key(transaction_id: str) -> str:
    return DECISION_KEY_PREFIX + transaction_id


def with_marker_windows(plan: EntityReadPlan) -> EntityReadPlan:
    """``plan`` also reading ``(t - H, t]`` of the entity's event and label logs.

    The consistency markers (:mod:`rtml_decision.request_features`) count the
    entity's events and known labels over its horizon ``H``; the features'
    own windows need not end at ``t`` (label-delayed ones end at ``t - d``),
    so the read adds that window: at most two more floor searches per log.
    """
    window = (plan.spec.horizon_ms, 0)
    events = plan.event_windows if window in plan.event_windows \
        else (*plan.event_windows, window)
    labels = plan.label_windows
    if plan.spec.label_fields and window not in labels:
        labels = (*labels, window)
    return replace(plan, event_windows=events, label_windows=labels, asks_has=True)


class RequestStore:
    """Idempotency records and prefix-log reads for one feature set."""

    def __init__(self, client: Client, feature_set: FeatureSet, ttl_s: int) -> None:
        self.client = client
        self.feature_set = feature_set
        self.ttl_s = ttl_s
        self.reader = PrefixLogReader(client, feature_set)
        self.reader.plans = [with_marker_windows(plan) for plan in self.reader.plans]
        self.cluster = is_cluster(client)
        self._lookup = client.register_script(LOOKUP_AND_CLAIM)
        self._claim_sha = hashlib.sha1(CLAIM.encode()).hexdigest()
        self._down_until = 0.0
        #: decisions waiting to replace their claims, and the timer writing them alone.
        self._queue: list[tuple[str, bytes]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, feature_set: FeatureSet, ttl_s: int,
                 timeout_s: float) -> RequestStore:
        """A store whose every command fails within ``timeout_s`` instead of retrying.

        On a Redis Cluster (``redis+cluster://``) a command is tried at most
        ``1 + CLUSTER_LOOKUP_RETRIES`` times (how the client follows a failover).
        """
        if is_cluster_url(url):
            client = connect(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                             retries=CLUSTER_LOOKUP_RETRIES)
        else:
            client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                          socket_connect_timeout=timeout_s,
                                          retry=Retry(NoBackoff(), 0))
        return cls(client, feature_set, ttl_s)

    def _call(self, keys: list[str], args: list[Any]) -> list[Any]:
        """Run the script (with the queued writes) unless Redis failed within the cool-down."""
        if time.monotonic() < self._down_until:
            raise RedisUnavailable("redis failed less than a cool-down ago")
        try:
            if not self._queue:
                reply: list[Any] = self._lookup(keys=keys, args=args)
                return reply
            pipe = self._writes()
            # EVALSHA by hand: a Script object in a pipeline costs a SCRIPT EXISTS
            # round trip per execute; NOSCRIPT (Redis restarted) is rare, see below
            pipe.evalsha(self._lookup.sha, len(keys), *keys, *args)
            replies = pipe.execute(raise_on_error=False)
            self._log_failed_writes(replies[:-1])
            reply = replies[-1]
            if isinstance(reply, NoScriptError):
                reply = self._lookup(keys=keys, args=args)  # loads the script, runs it
            elif isinstance(reply, Exception):
                raise reply
        except REDIS_FAILURES:
            self._down_until = time.monotonic() + COOLDOWN_S
            raise
        return list(reply)

    def _writes(self) -> Any:
        """A pipeline holding every queued decision write (the queue is emptied)."""
        batch, self._queue = self._queue, []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pipe = self.client.pipeline(transaction=False)
        for key, payload in batch:
            pipe.set(key, payload, ex=self.ttl_s)
        return pipe

    @staticmethod
    def _log_failed_writes(replies: list[Any]) -> None:
        failed = [r for r in replies if isinstance(r, Exception)]
        if failed:  # those claims expire; a retry would decide again
            logger.warning("cannot record %d decisions for idempotency: %r", len(failed),
                           failed[0])

    def lookup(self, transaction_id: str, request_fingerprint: bytes, time_ms: int,
               ids: dict[str, str | None]) -> Lookup:
        """One round trip: the stored decision, or our claim and every entity's log views.

        The claim carries ``request_fingerprint`` (see :func:`fingerprint`).
        ``time_ms`` is the request's event time as the pipeline stores it
        (:func:`rtml_features.rows.epoch_ms`); ``ids`` maps a request field
        (``customer_id``) to its value; an entity whose id is absent (no
        terminal) is not read and left out of ``entities``.
        """
        if self.cluster:
            return self._cluster_lookup(transaction_id, request_fingerprint, time_ms, ids)
        keys, args, asked = self.reader.request(transaction_id, time_ms, ids)
        reply = self._call([decision_key(transaction_id), *keys],
                           [PENDING + request_fingerprint, PENDING_TTL_MS, *args])
        if reply[0] is not None:
            return Lookup(Stored.parse(bytes(reply[0])), {})
        return Lookup(None, self.reader.views(asked, reply[1], transaction_id, time_ms))

    def _cluster_lookup(self, transaction_id: str, request_fingerprint: bytes, time_ms: int,
                        ids: dict[str, str | None]) -> Lookup:
        """:meth:`lookup` on a Redis Cluster: the claim and one read per entity, with the
        queued writes, in one pipeline (see the module docstring)."""
        if time.monotonic() < self._down_until:
            raise RedisUnavailable("redis failed less than a cool-down ago")
        client = self.client
        assert isinstance(client, RedisCluster)
        calls, asked = self.reader.entity_calls(transaction_id, time_ms, ids)
        scripts = [(self._claim_sha, [1, decision_key(transaction_id),
                                      PENDING + request_fingerprint, PENDING_TTL_MS]),
                   *((self.reader.sha, args) for args in calls)]
        batch = list(self._queue)
        sent = False
        try:
            pipe = self._writes()
            for sha, args in scripts:
                queue_script(pipe, client, sha, args)
            replies = list(pipe.execute(raise_on_error=False))
            sent = True
            self._requeue([write for write, reply in zip(batch, replies, strict=False)
                           if isinstance(reply, Exception)])
            replies = replies[len(batch):]
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:  # a node restarted, or a replica promoted, without our scripts
                self.client.script_load(CLAIM)
                self.client.script_load(READ_SCRIPT)
                again = self.client.pipeline(transaction=False)
                for i in missing:
                    sha, args = scripts[i]
                    queue_script(again, client, sha, args)
                for i, reply in zip(missing, again.execute(raise_on_error=False), strict=True):
                    replies[i] = reply
            for reply in replies:
                if isinstance(reply, Exception):
                    raise as_outage(reply)
        except ANY_REDIS_FAILURE as error:
            self._down_until = time.monotonic() + COOLDOWN_S
            if not sent:  # the pipeline failed whole (a node died): none is known written
                self._requeue(batch)
            outage = as_outage(error)
            if outage is error:
                raise
            raise outage from error
        if replies[0] is not None:
            return Lookup(Stored.parse(bytes(replies[0])), {})
        return Lookup(None, self.reader.views(asked, [reply[0] for reply in replies[1:]],
                                              transaction_id, time_ms))

    def _requeue(self, writes: list[tuple[str, bytes]]) -> None:
        """Decision writes a cluster failed to take go back in the queue (a ``SET`` is
        idempotent), for the next lookup or flush, up to :data:`MAX_REQUEUED` waiting.

        On a cluster a lookup's pipeline fails whole when one node dies, taking the
        writes to the healthy nodes with it; dropped, their claims would answer
        replays 409 until they expire. (A single Redis keeps the drop: there the
        failure is Redis itself.)"""
        if not writes or self._closed:
            return
        room = MAX_REQUEUED - len(self._queue)
        if room < len(writes):
            logger.warning("cannot record %d decisions for idempotency (Redis unavailable)",
                           len(writes) - max(room, 0))
        self._queue[:0] = writes[:max(room, 0)]
        if self._queue and self._timer is None:
            # no running loop (a synchronous caller): the next lookup sends them
            with contextlib.suppress(RuntimeError):
                self._timer = asyncio.get_running_loop().call_later(COOLDOWN_S, self.flush)

    async def wait_for_decision(self, transaction_id: str, timeout_s: float) -> Stored:
        """The decision of a concurrent request holding the claim, once it is stored.

        Raises :class:`DecisionInProgress` when it is still pending after
        ``timeout_s``; a claim whose holder died has expired by the next retry.
        """
        deadline = time.monotonic() + timeout_s
        key = decision_key(transaction_id)
        while True:
            raw = self.client.get(key)
            if isinstance(raw, bytes):
                stored = Stored.parse(raw)
                if stored.body is not None:
                    return stored
            if time.monotonic() >= deadline:
                raise DecisionInProgress(transaction_id)
            await asyncio.sleep(POLL_INTERVAL_S)

    def record(self, transaction_id: str, request_fingerprint: bytes, payload: bytes) -> None:
        """Store our decision (after the request fingerprint) over our claim, off the latency path.

        It rides along with the next lookup's round trip, or is written
        (with whatever else is queued) after :data:`WRITE_DELAY_S`.
        """
        self._queue.append((decision_key(transaction_id),
                            DECIDED + request_fingerprint + payload))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(WRITE_DELAY_S, self.flush)

    def flush(self) -> None:
        """Write the queued decisions now, in one pipeline."""
        if not self._queue:
            return
        batch = list(self._queue)
        pipe = self._writes()
        try:
            replies = pipe.execute(raise_on_error=False)
        except ANY_REDIS_FAILURE as error:
            if self.cluster:
                self._requeue(batch)
            else:
                logger.warning("cannot record decisions for idempotency: %r", error)
            return
        if self.cluster:
            self._requeue([write for write, reply in zip(batch, replies, strict=True)
                           if isinstance(reply, Exception)])
        else:
            self._log_failed_writes(replies)

    def close(self) -> None:
        """Write what is queued, then close the connection pool."""
        self.flush()
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.client.close()
