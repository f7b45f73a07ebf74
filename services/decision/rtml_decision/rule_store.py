"""The active rule set shared by every worker process and replica: one Redis hash.

Why: each process holds its rules in memory (:mod:`rtml_decision.active_rules`);
an upload that only swapped the receiving process's copy left the other
uvicorn workers and replicas deciding with the old rules. The store is the
one truth every process converges on:

* ``<prefix>active`` — a hash: ``revision``, ``version``, ``name``,
  ``source``, ``activated_at`` and ``text`` (the uploaded YAML, validated
  before it was stored);
* ``<prefix>revision`` — the last revision handed out: ``INCR``-ed by each
  activation, or moved up to Redis's clock (ms since the epoch) when that is
  more, so revisions keep increasing even after Redis lost the counter;
* ``<prefix>activations`` — a pub/sub channel announcing each new revision.

An activation is one Lua script (:data:`ACTIVATE`): increment the counter,
write the hash with that revision, publish the revision — atomic, so the
hash always holds the set of the highest revision ever handed out, and two
concurrent activations on different replicas are ordered by their
revisions: the later one wins everywhere, because a process only ever moves
to a *higher* revision than the one it holds.

Redis here keeps no persistence (features are rebuilt from Kafka), so the
store may lose the set. Running processes notice (the stored revision is
below theirs) and store what they hold again (:data:`RESEED`, only if the
counter is below their revision), and an upload made after the loss still
gets a higher revision (the clock); a set survives as long as one process
holding it runs.

Why pub/sub and not a Kafka topic like ``model-events``: the state lives in
Redis anyway, so the announcement needs no durability — a subscriber that
connects or reconnects re-reads the hash, and a periodic re-read catches an
announcement missed in between. A rule set may be larger than a Kafka
record (``RTML_DECISION_RULES_MAX_BYTES`` up to 50 MB), so an event could
only point at the store; pub/sub also needs no topic, schema or consumer
group per process, and the announcement is published by the same atomic
script that writes the set.

``<prefix>`` is ``RTML_DECISION_RULES_KEY_PREFIX`` (``rtml:decision-rules:``),
outside the idempotency records' ``rtml:decision:<transaction id>`` space,
so no transaction id can name these keys.

On a Redis Cluster (``RTML_REDIS_URL=redis+cluster://...``) the scripts' two keys
must share a slot: there they are ``<prefix>{rules}active`` and
``<prefix>{rules}revision`` (one hash tag; the channel is not a key, and a
``PUBLISH`` reaches every node's subscribers). A single Redis keeps the names
above, so an existing deployment's stored set is still found after an upgrade.
The cluster client (``connect``) raises a failover's transient errors as
``redis.ConnectionError``, which callers already treat as "Redis unavailable"
(503 on upload, keep the rules held on a sync).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rtml_common.events import utcnow
from rtml_decision.rules import RuleSet
from rtml_features.online_store.redis.connection import (
    Client,
    connect,
    is_cluster,
    is_cluster_url,
)

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "rtml:decision-rules:"
#: The hash tag the keys carry on a Redis Cluster (after the prefix, before the name).
CLUSTER_TAG = "{rules}"

#: KEYS[1] the hash, KEYS[2] the counter; ARGV version, name, source, activated_at, text,
#: channel. The revision: the counter plus one, or Redis's clock in ms when that is more
#: (after Redis lost the counter, a new activation still outranks every older one).
#: Returns the new revision.
ACTIVATE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local revision = redis.call('INCR', KEYS[2])
if revision < now then
  revision = now
  redis.call('SET', KEYS[2], revision)
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'revision', revision, 'version', ARGV[1], 'name', ARGV[2],
           'source', ARGV[3], 'activated_at', ARGV[4], 'text', ARGV[5])
redis.call('PUBLISH', ARGV[6], revision)
return revision
"""

#: Like :data:`ACTIVATE` with a given revision (ARGV[7]), only if the counter is below it.
#: Returns 1 if stored.
RESEED = """
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[7]) then return 0 end
redis.call('SET', KEYS[2], ARGV[7])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'revision', ARGV[7], 'version', ARGV[1], 'name', ARGV[2],
           'source', ARGV[3], 'activated_at', ARGV[4], 'text', ARGV[5])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
"""

_FIELDS = ("revision", "version", "name", "source", "activated_at", "text")


def _text(value: bytes | str, strict: bool = False) -> str:
    """A Redis reply as text (the client returns bytes)."""
    if isinstance(value, str):
        return value
    return value.decode("utf-8", "strict" if strict else "replace")


class StoredRulesInvalid(ValueError):
    """The stored hash is not a rule-set record (a field missing or malformed)."""


@dataclass(frozen=True)
class StoredRules:
    """One activation as stored: its revision, what was activated and the YAML text."""

    revision: int
    version: str
    name: str
    source: str
    activated_at: datetime
    text: str


class RuleStore:
    """Reads and writes the shared active rule set (see the module docstring)."""

    def __init__(self, client: Client, prefix: str = DEFAULT_PREFIX) -> None:
        self.client = client
        keys = f"{prefix}{CLUSTER_TAG}" if is_cluster(client) else prefix
        self.active_key = f"{keys}active"
        self.revision_key = f"{keys}revision"
        self.channel = f"{prefix}activations"
        self._activate = client.register_script(ACTIVATE)
        self._reseed = client.register_script(RESEED)

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_PREFIX,
                 timeout_s: float = 1.0) -> RuleStore:
        """A store on its own client: admin writes and re-reads never queue behind requests.

        One immediate retry (a pooled connection that went stale when Redis
        restarted); a retried activation may skip a revision, which is harmless.
        On a Redis Cluster the client's bounded retries (it follows a failover).
        """
        client: Client
        if is_cluster_url(url):
            client = connect(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        else:
            client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                          socket_connect_timeout=timeout_s,
                                          health_check_interval=30,
                                          retry=Retry(NoBackoff(), 1))
        return cls(client, prefix)

    def activate(self, rule_set: RuleSet, text: str, source: str) -> tuple[int, datetime]:
        """Store a validated ``rule_set`` (its YAML ``text``) as active; its revision and time."""
        activated_at = utcnow()
        revision = self._activate(
            keys=[self.active_key, self.revision_key],
            args=[rule_set.version, rule_set.name, source, activated_at.isoformat(), text,
                  self.channel])
        return int(revision), activated_at

    def reseed(self, revision: int, rule_set: RuleSet, text: str, source: str,
               activated_at: datetime) -> bool:
        """Store again the set a process holds, after Redis lost it (restart without
        persistence, flush): only if the counter is below ``revision``, so of several
        processes re-seeding at once the highest revision stays. True if stored."""
        stored = self._reseed(
            keys=[self.active_key, self.revision_key],
            args=[rule_set.version, rule_set.name, source, activated_at.isoformat(), text,
                  self.channel, revision])
        return bool(stored)

    def revision(self) -> int:
        """The revision of the stored set; 0 when none was ever stored."""
        raw = self.client.hget(self.active_key, "revision")
        if raw is None:
            return 0
        try:
            return int(raw)
        except ValueError:
            raise StoredRulesInvalid(f"{self.active_key}: revision {raw[:40]!r} is not an "
                                     "integer") from None

    def load(self) -> StoredRules | None:
        """The stored set (not validated: the caller re-validates it); None when none is."""
        raw = self.client.hgetall(self.active_key)
        if not raw:
            return None
        fields = {_text(key): value for key, value in raw.items()}
        missing = [name for name in _FIELDS if name not in fields]
        if missing:
            raise StoredRulesInvalid(f"{self.active_key}: field(s) {', '.join(missing)} "
                                     "missing")
        try:
            values = {name: _text(fields[name], strict=True) for name in _FIELDS}
            return StoredRules(revision=int(values["revision"]), version=values["version"],
                               name=values["name"], source=values["source"],
                               activated_at=datetime.fromisoformat(values["activated_at"]),
                               text=values["text"])
        except (UnicodeDecodeError, ValueError) as error:
            raise StoredRulesInvalid(f"{self.active_key}: {type(error).__name__}: "
                                     f"{str(error)[:200]}") from None

    def close(self) -> None:
        self.client.close()
