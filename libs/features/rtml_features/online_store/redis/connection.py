"""One Redis URL, a single server or a Redis Cluster: the client every service builds from it.

Every service that talks to the online store reads one setting, ``RTML_REDIS_URL``;
its scheme chooses the mode, so a deployment switches all of them together:

* ``redis://host:port/0`` — one Redis server (``redis.Redis``), as before;
* ``redis+cluster://host:port[,host:port...]`` — a Redis Cluster
  (``redis.cluster.RedisCluster``): the listed nodes are start-up nodes, the client
  discovers the others and follows slot moves (``MOVED``/``ASK``) and failovers. A
  password goes before the hosts (``redis+cluster://:secret@h1:7000,h2:7001``); a
  cluster has one database, so a path other than ``/`` or ``/0`` is refused, as is TLS
  (not supported here yet).

What changes on a cluster (the key layout and the round trips of each caller) is in
docs/online-store.md, "Redis Cluster". Callers ask :func:`is_cluster` which path to take;
the single-server paths are unchanged.
"""

from __future__ import annotations

from typing import Any, TypeAlias
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    ClusterDownError,
    NoScriptError,
    RedisClusterException,
    TryAgainError,
)
from redis.retry import Retry

CLUSTER_SCHEME = "redis+cluster"

#: A client of either mode (the store's callers accept both).
Client: TypeAlias = "redis.Redis | RedisCluster"

#: Errors a cluster raises while it moves slots or elects a new master, besides the
#: connection errors a single server raises too: transient, like an outage.
#: ``RedisClusterException`` (no node covers a slot, ...) does not derive from
#: ``RedisError``: callers that catch ``RedisError`` must catch these as well.
CLUSTER_TRANSIENT: tuple[type[Exception], ...] = (ClusterDownError, TryAgainError,
                                                  RedisClusterException)

#: Attempts of one cluster command (or pipeline) after the first: a command sent to a
#: master that just lost its slots is answered ``MOVED``, a dead master's connection
#: fails; the client refreshes the slot map and sends again. Bounded, with a short
#: backoff (1, 2, 4 ms... capped at 50 ms), so a failover costs a request a few ms.
CLUSTER_RETRIES = 3


class OutageMappedCluster(RedisCluster):
    """``RedisCluster`` whose single commands raise a cluster's transient errors as
    ``redis.ConnectionError`` (:func:`as_outage`), like its pipelines here do.

    Why: callers (the pipeline's checkpoint and marker, the decision API's waits and
    replays, the rule store) treat ``redis.ConnectionError`` as "Redis unavailable"
    and wait or degrade; a ``CLUSTERDOWN`` reply (a ``ResponseError``) would instead
    read as "this write is refused", and the feature worker drops what it refuses.
    """

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute_command(*args, **kwargs)
        except CLUSTER_TRANSIENT as error:
            raise as_outage(error) from error

    def _execute_pipeline_by_slot(self, *args: Any, **kwargs: Any) -> Any:
        """Multi-key commands (``EXISTS``, ``DELETE``, ``MGET``...) go through a pipeline
        per slot (redis-py's ``ClusterMultiKeyCommands``), not :meth:`execute_command`."""
        try:
            return super()._execute_pipeline_by_slot(*args, **kwargs)
        except CLUSTER_TRANSIENT as error:
            raise as_outage(error) from error


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://``)."""
    return url.split("://", 1)[0].lower() == CLUSTER_SCHEME


def is_cluster(client: Any) -> bool:
    """Whether ``client`` talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)


def cluster_nodes(url: str) -> tuple[list[ClusterNode], dict[str, Any]]:
    """Start-up nodes and credentials of a ``redis+cluster://`` URL.

    >>> nodes, auth = cluster_nodes("redis+cluster://:pw@127.0.0.1:7000,127.0.0.1:7001/0")
    >>> [(n.host, n.port) for n in nodes], auth
    ([('127.0.0.1', 7000), ('127.0.0.1', 7001)], {'password': 'pw'})
    """
    if not is_cluster_url(url):
        raise ValueError(f"not a {CLUSTER_SCHEME}:// URL: {url!r}")
    rest = url.split("://", 1)[1]
    location, _, path = rest.partition("/")
    path = path.split("?", 1)[0]
    if path not in ("", "0"):
        raise ValueError(f"{url!r}: a Redis Cluster has database 0 only (path /{path})")
    userinfo, _, hosts = location.rpartition("@")
    auth: dict[str, Any] = {}
    if userinfo:
        user, _, password = userinfo.partition(":")
        if user:
            auth["username"] = unquote(user)
        if password:
            auth["password"] = unquote(password)
    nodes = []
    for part in hosts.split(","):
        split = urlsplit(f"//{part}")
        if not split.hostname or not split.port:
            raise ValueError(f"{url!r}: {part!r} is not host:port")
        nodes.append(ClusterNode(split.hostname, split.port))
    return nodes, auth


def connect(url: str, socket_timeout: float | None = None,
            socket_connect_timeout: float | None = None, retries: int | None = None,
            **kwargs: Any) -> Client:
    """A client for ``url``: ``redis.Redis`` or ``RedisCluster`` (see the module docstring).

    ``retries``: how often a failed command is tried again (None: redis-py's default
    on a single server, :data:`CLUSTER_RETRIES` on a cluster). On a single server
    ``0`` is "never" (the decision API's choice). On a cluster a retry is also how
    the client follows a failover, so at least one is kept there: ``0`` becomes one
    retry without backoff.
    """
    options: dict[str, Any] = dict(kwargs)
    if socket_timeout is not None:
        options["socket_timeout"] = socket_timeout
    if socket_connect_timeout is not None:
        options["socket_connect_timeout"] = socket_connect_timeout
    if not is_cluster_url(url):
        if retries is not None:
            options["retry"] = Retry(NoBackoff(), retries)
        return redis.Redis.from_url(url, **options)
    nodes, auth = cluster_nodes(url)
    if retries == 0:
        retry = Retry(NoBackoff(), 1)
    else:
        retry = Retry(ExponentialBackoff(cap=0.05, base=0.001),
                      CLUSTER_RETRIES if retries is None else retries)
    return OutageMappedCluster(startup_nodes=nodes, retry=retry, **auth, **options)


def slot_of(key: str | bytes) -> int:
    """The cluster hash slot of ``key`` (its ``{tag}`` when it has one)."""
    return key_slot(key.encode() if isinstance(key, str) else key)


def entity_tag(entity: str, entity_id: str) -> str:
    """The hash tag that keeps one entity's keys in one slot: ``{entity:id}``.

    The tag starts at a ``{`` this function writes, after a prefix without braces,
    and is never empty (it starts with the entity name), so every key built as
    ``prefix + tag`` with the same entity and id hashes alike even when the id
    holds braces (Redis then hashes the text up to the id's first ``}``).

    >>> entity_tag("customer", "C1")
    '{customer:C1}'
    >>> slot_of("a:@ev:" + entity_tag("customer", "x}y")) == slot_of(
    ...     "a:@lb:" + entity_tag("customer", "x}y"))
    True
    """
    return f"{{{entity}:{entity_id}}}"


def as_outage(error: BaseException) -> BaseException:
    """A cluster's transient error as the ``redis.ConnectionError`` callers treat as an outage.

    A master that is down or just lost its slots answers ``CLUSTERDOWN`` or
    ``TRYAGAIN`` (``ResponseError`` subclasses), or the client finds no node for a
    slot (``RedisClusterException``, not even a ``RedisError``): for the feature
    pipeline and the decision API that is Redis being unavailable for a moment,
    not a refused write, so they wait / answer degraded instead of dropping work.
    """
    if isinstance(error, CLUSTER_TRANSIENT):
        outage = redis.ConnectionError(f"redis cluster unavailable: {error!r}")
        outage.__cause__ = error
        return outage
    return error


def cluster_evalsha(client: RedisCluster, script: str, sha: str,
                    calls: list[list[Any]]) -> list[Any]:
    """``EVALSHA sha *args`` for each of ``calls`` in one cluster pipeline; the replies.

    redis-py routes each call by its keys (they must share a slot), writes every
    node's commands before reading any reply (one round trip, the nodes in
    parallel) and follows ``MOVED``/``ASK``. A node that does not know the script
    (restarted, or a replica promoted since it was loaded) answers NOSCRIPT: the
    script is loaded on every master and those calls are sent again (the scripts
    here are idempotent). Another error reply is raised (:func:`as_outage` for
    a cluster's transient ones) after every reply was read.
    """
    replies = _pipelined(client, sha, calls)
    retry = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if retry:
        client.script_load(script)
        for i, reply in zip(retry, _pipelined(client, sha, [calls[i] for i in retry]),
                            strict=True):
            replies[i] = reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise as_outage(reply)
    return replies


def queue_script(pipe: Any, client: RedisCluster, sha: str, args: list[Any]) -> None:
    """Queue ``EVALSHA sha *args`` (``args``: key count, keys, arguments) on a cluster pipeline,
    sent to the master of its first key's slot.

    Why not let the pipeline route it: redis-py 8's cluster pipeline finds the keys
    of a script call by asking a server (``COMMAND GETKEYS``, one round trip *per
    command*, ~0.2 ms: measured, it was two thirds of a 1,000-entity write). The
    slot map it keeps answers without one; a command the map sent to the wrong
    node (a failover moved the slot) is answered ``MOVED`` and sent again by the
    client, which then updates the map.
    """
    node = client.nodes_manager.get_node_from_slot(slot_of(args[1])) if args[0] else None
    if node is None:
        pipe.execute_command("EVALSHA", sha, *args)
    else:
        pipe.execute_command("EVALSHA", sha, *args, target_nodes=node)


def _pipelined(client: RedisCluster, sha: str, calls: list[list[Any]]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for args in calls:
        queue_script(pipe, client, sha, args)
    try:
        return list(pipe.execute(raise_on_error=False))
    except CLUSTER_TRANSIENT as error:
        raise as_outage(error) from error
