"""One Lua call per chunk of entities: the cheap-in-Python write path of the Redis store.

Writing an entity as its own HSET (+ EXPIRE) costs redis-py ~10 µs of Python per
entity: one command object, one packing, one reply parsed per command. Here a
chunk of up to :data:`CHUNK_KEYS` entities is ONE ``EVALSHA`` of :data:`WRITE_SCRIPT`,
whose arguments are flat lists Python builds with a few appends per entity; the
script does the HSET and EXPIRE of every key server side, and there is one reply
per chunk. All chunks of a call go in one pipeline: one round trip. Measured on
1,000-entity batches: Python ~13 -> ~2.5 µs an entity; Redis CPU ~3-4 -> ~5 µs
(each ``redis.call`` in Lua costs more than a command read off the socket, and
EXPIRE is now sent every time), a trade worth making while the worker's Python,
not Redis, is the bottleneck.

Arguments of one call (``KEYS`` are the entity keys, in write order)::

    ARGV = ttl, as-of field, tx field, schema count,
           per schema: feature count, feature names...,
           per key: its transaction id,
           NUMBERS

where ``NUMBERS`` is ONE argument, the texts of every key's schema index
(0-based), as_of_ms and feature values (in its schema's order), key after
key, joined by commas. A *schema* is the tuple of an entity's feature names
(one per entity kind of the feature set), sent once per chunk instead of once
per key.

One argument for all numbers because packing is priced per argument: hiredis's
``pack_command`` costs ~0.1 µs an argument, and an entity of six features
used to be ten of them (~1 µs, more than the rest of its write). The script
splits the text again (``string.gmatch``, on Redis's CPU, not the worker's).

Values are sent as ``repr(float)`` text, which round-trips bit for bit. A
non-finite value is refused before anything is sent (the store contract, see
:mod:`rtml_features.online_store.base`): the one test per chunk is a byte
search for ``n`` in the chunk's number text (``inf``, ``nan``; measured ~1 µs
for a 256-entity chunk's 13 KB on a loaded machine, under 0.5 % of building
the chunk), the values themselves are only walked when it finds one. ``repr``
of a full-precision double costs ~0.4 µs (CPython's dtoa), more than the rest of
the write; :func:`number_texts` gets the same text from one ``orjson.dumps`` of
the chunk's numbers (~20 ns a value): both print the shortest digits that
round-trip (checked on 36 M doubles of every magnitude), and ``repr`` itself
is used for every token whose *formatting* differs or could (exponents,
magnitudes below 1e-4, non-finite or non-numeric values, types orjson refuses).

Arguments are packed by :class:`DirectPacker`: redis-py's own hiredis packer
first copies every argument through a Python generator (turning bytearray and
memoryview into bytes), ~100 ns an argument — as much as the rest of the write.

The script only writes the keys it is given (``KEYS``); it is atomic, so Redis
serves nobody else while it runs: the chunk size bounds that stall (~1.3 ms).

Never older over newer: a key whose stored ``_as_of_ms`` is *later* than the
write's is left as it is (values, event and TTL), so the store holds the values
of the newest event whatever order writes arrive in (two workers, a replayed
tail, a write delayed in flight); an equal as-of is written (the same event
again, or a revision of its vector). One ``HGET`` more per key, on Redis's CPU.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, cast

import orjson
import redis
from redis.cluster import RedisCluster
from redis.exceptions import DataError, NoScriptError, ResponseError
from redis.utils import HIREDIS_AVAILABLE

from rtml_features.online_store.base import EntityValues, refuse_non_finite, write_completed
from rtml_features.online_store.redis.connection import (
    Client,
    cluster_evalsha,
    is_cluster,
    slot_of,
)

if HIREDIS_AVAILABLE:  # redis-py's own condition for using hiredis
    from hiredis import pack_command

#: Keys per script call: bounds how long one call blocks Redis (~5 µs a key).
CHUNK_KEYS = 256

WRITE_SCRIPT = """
local ttl, as_of_field, tx_field = ARGV[1], ARGV[2], ARGV[3]
local pos = 5
local schemas = {}
for s = 1, tonumber(ARGV[4]) do
  local count = tonumber(ARGV[pos])
  schemas[s] = {unpack(ARGV, pos + 1, pos + count)}
  pos = pos + count + 1
end
local numbers = string.gmatch(ARGV[pos + #KEYS], '[^,]+')
for i = 1, #KEYS do
  local names = schemas[tonumber(numbers()) + 1]
  local as_of = numbers()
  local fields = {}
  for j = 1, #names do
    fields[2 * j - 1] = names[j]
    fields[2 * j] = numbers()
  end
  local n = 2 * #names
  fields[n + 1], fields[n + 2] = as_of_field, as_of
  fields[n + 3], fields[n + 4] = tx_field, ARGV[pos + i - 1]
  local stored = redis.call('HGET', KEYS[i], as_of_field)
  stored = stored and tonumber(stored)
  if not stored or stored <= tonumber(as_of) then
    redis.call('HSET', KEYS[i], unpack(fields))
    redis.call('EXPIRE', KEYS[i], ttl)
  end
end
return #KEYS
"""

# Bytes of a token whose text orjson and repr() agree on (plain positional decimals).
_POSITIONAL = b"0123456789.-"
# Positional text below 1e-4: repr() switches to an exponent there, orjson does not.
_TINY = (b"0.0000", b"-0.0000")


def repr_texts(values: list[Any]) -> list[bytes]:
    """``repr(v).encode()`` of each value; orjson's text wherever it is repr's."""
    if not values:
        return []
    try:
        blob = orjson.dumps(values)
    except TypeError:  # a float subclass or another type orjson refuses
        return [repr(value).encode() for value in values]
    texts = blob[1:-1].split(b",")
    if blob.translate(None, b"0123456789.-,[]") or b"0.0000" in blob:
        texts = [text if not text.translate(None, _POSITIONAL) and not text.startswith(_TINY)
                 else repr(value).encode() for text, value in zip(texts, values, strict=True)]
    return texts


def number_texts(values: list[Any]) -> bytes:
    """The ``repr`` texts of ``values``, joined by commas (one script argument)."""
    try:
        blob = orjson.dumps(values)
    except TypeError:  # a float subclass or another type orjson refuses
        blob = b""
    else:
        body = blob[1:-1]
        if not body.translate(None, b"0123456789.-,") and b"0.0000" not in body:
            return body  # every token positional and >= 1e-4: repr's own text
    texts = repr_texts(values)
    if len(texts) != len(values) or any(b"," in text for text in texts):  # e.g. a nested list
        raise TypeError("feature values must be numbers: a value's text contains a comma")
    return b",".join(texts)


def chunk_args(prefix: str, updates: Sequence[EntityValues], ttl_s: int,
               as_of_field: str, tx_field: str) -> list[Any]:
    """``EVALSHA`` arguments after the sha (key count, KEYS, ARGV) for one chunk."""
    keys: list[str] = []
    transaction_ids: list[str] = []
    numbers: list[Any] = []
    schemas: dict[tuple[str, ...], int] = {}
    for update in updates:
        keys.append(f"{prefix}{update.entity}:{update.entity_id}")
        features = update.values
        names = tuple(features)
        index = schemas.get(names)
        if index is None:
            index = schemas[names] = len(schemas)
        numbers.append(index)
        numbers.append(update.as_of_ms)
        numbers.extend(features.values())
        transaction_ids.append(update.transaction_id)
    header: list[Any] = [ttl_s, as_of_field, tx_field, len(schemas)]
    for names in schemas:
        header.append(len(names))
        header.extend(names)
    texts = number_texts(numbers)
    if b"n" in texts:  # repr spells inf and nan so; a finite number's text has no "n"
        refuse_non_finite(updates)
    return [len(keys), *keys, *header, *transaction_ids, texts]


class DirectPacker:
    """redis-py's hiredis command packer without its per-argument Python pass.

    Given as ``command_packer`` to the store's client. Same bytes on the wire for
    the str, bytes and int arguments the store sends; a bytearray or memoryview
    argument would be refused by hiredis (DataError) rather than converted.
    """

    def pack(self, *args: Any) -> list[bytes]:
        """Pack one command; a first argument with spaces (``"SCRIPT LOAD"``) is split."""
        first = args[0].encode() if isinstance(args[0], str) else args[0]
        if b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [pack_command(args)]
        except TypeError as error:
            raise DataError(error) from error


def command_packer() -> DirectPacker | None:
    """The packer for the store's client; None (redis-py's default) without hiredis."""
    return DirectPacker() if HIREDIS_AVAILABLE else None


class BulkWriter:
    """Sends chunks of entity writes as ``EVALSHA`` calls, loading the script on NOSCRIPT.

    On a Redis Cluster a script call may only touch keys of one slot: the updates are
    grouped by their key's slot, a chunk per group (with entities spread over 16,384
    slots, nearly one call per entity), sent by the cluster client in one pipeline per
    node (all nodes in parallel); the write is done when :meth:`begin` returns.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.cluster = is_cluster(client)
        # Not loaded here: constructing a store must not need a live server; the
        # first call's NOSCRIPT loads it.
        self.sha = hashlib.sha1(WRITE_SCRIPT.encode()).hexdigest()

    def write(self, prefix: str, updates: Sequence[EntityValues], ttl_s: int,
              as_of_field: str, tx_field: str) -> None:
        """Write ``updates`` (keys ``prefix + entity:id``) in one round trip."""
        self.begin(prefix, updates, ttl_s, as_of_field, tx_field)()

    def begin(self, prefix: str, updates: Sequence[EntityValues], ttl_s: int,
              as_of_field: str, tx_field: str) -> Callable[[], None]:
        """Send the write of ``updates``; return the waiter that reads Redis's replies.

        Between the two, Redis runs the scripts (~5 µs an entity: as long as the
        worker's own Python for it) while the caller gets on with other work.
        Each outstanding write holds its own pooled connection until its waiter
        returns, so the waiter must always be called.

        A server that lost its script cache (restart, ``SCRIPT FLUSH``) answers
        NOSCRIPT: the waiter loads the script again and repeats the whole write,
        which is safe because writes are idempotent and replayed in the same order.
        Any other error reply, or a broken connection, is raised by the waiter
        after every reply has been read (or the connection dropped), so the pooled
        connection never desynchronises.
        """
        if self.cluster:
            return self._cluster_write(prefix, updates, ttl_s, as_of_field, tx_field)
        calls = [chunk_args(prefix, updates[start:start + CHUNK_KEYS], ttl_s,
                            as_of_field, tx_field)
                 for start in range(0, len(updates), CHUNK_KEYS)]
        if not calls:
            return write_completed
        pool = cast(redis.Redis, self.client).connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command(
                connection.pack_commands([("EVALSHA", self.sha, *args) for args in calls]))
        except BaseException:
            connection.disconnect()
            pool.release(connection)
            raise

        def wait() -> None:
            errors: list[ResponseError] = []
            try:
                for _ in calls:
                    try:
                        connection.read_response()
                    except ResponseError as error:  # a reply: the next one still follows
                        errors.append(error)
            except BaseException:
                connection.disconnect()  # replies left unread: the socket is out of step
                raise
            finally:
                pool.release(connection)
            if errors and all(isinstance(error, NoScriptError) for error in errors):
                self.sha = self.client.script_load(WRITE_SCRIPT)
                self._send(calls)
            elif errors:
                raise errors[0]

        return wait

    def _cluster_write(self, prefix: str, updates: Sequence[EntityValues], ttl_s: int,
                       as_of_field: str, tx_field: str) -> Callable[[], None]:
        groups: dict[int, list[EntityValues]] = {}
        for update in updates:  # in order: a key written twice keeps its last write last
            slot = slot_of(f"{prefix}{update.entity}:{update.entity_id}")
            groups.setdefault(slot, []).append(update)
        calls = [chunk_args(prefix, group[start:start + CHUNK_KEYS], ttl_s, as_of_field,
                            tx_field)
                 for group in groups.values() for start in range(0, len(group), CHUNK_KEYS)]
        if calls:
            assert isinstance(self.client, RedisCluster)
            cluster_evalsha(self.client, WRITE_SCRIPT, self.sha, calls)
        return write_completed

    def _send(self, calls: list[list[Any]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for args in calls:
            pipe.execute_command("EVALSHA", self.sha, *args)
        pipe.execute()
