"""The Redis store's one-script-call write path writes exactly what per-key HSETs wrote.

The expected hashes are built here the way the previous write built them (one HSET
of ``{feature: repr(value), "_as_of_ms": str(ms), "_tx": tx}`` per entity), so any
difference in key, field or value text fails.
"""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import numpy as np
import pytest
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from rtml_features.baseline import BASELINE
from rtml_features.online_store.base import EntityValues, NonFiniteFeatureValue, entity_features
from rtml_features.online_store.redis.bulk_write import (
    CHUNK_KEYS,
    DirectPacker,
    chunk_args,
    number_texts,
    repr_texts,
)
from rtml_features.online_store.redis.store import RedisOnlineStore, entity_key

TTL_S = 600
CUSTOMER = entity_features(BASELINE, BASELINE.entities[0])
TERMINAL = entity_features(BASELINE, BASELINE.entities[1])

#: Values whose text is easy to get wrong: exponents, the 1e-4 and 1e16 switches
#: between positional and exponent notation, signed zero, subnormals, non-finite.
TRICKY = [0.1 + 0.2, 1e-300, -0.0, 0.0, 5e-324, 1.7976931348623157e308, 1e16, 1e15,
          9999999999999998.0, 1e-4, 9.999999999999999e-05, 1.5e-05, -2.5e-07, 123456.789,
          2.0**53, 1 / 3, -1.0, math.inf, -math.inf, math.nan]
#: What a store may hold: non-finite values are refused (see the tests at the end).
FINITE = [value for value in TRICKY if math.isfinite(value)]


def random_doubles(rnd: random.Random, n: int) -> list[float]:
    """Doubles from random bit patterns and from every decade (finite only)."""
    out = [rnd.random() * 10.0 ** rnd.randint(-320, 300) * rnd.choice((1, -1)) for _ in range(n)]
    out += [struct.unpack("<d", rnd.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(n)]
    return [x for x in out if math.isfinite(x)]


def expected_hash(update: EntityValues) -> dict[bytes, bytes]:
    """The hash the per-key HSET write produced for ``update``."""
    fields = {name.encode(): repr(value).encode() for name, value in update.values.items()}
    fields[b"_as_of_ms"] = str(update.as_of_ms).encode()
    fields[b"_tx"] = update.transaction_id.encode()
    return fields


def make_updates(rnd: random.Random, n: int, values: list[float],
                 prefix: str = "id") -> list[EntityValues]:
    """``n`` updates alternating customer and terminal, values drawn from ``values``.

    Tests on the shared server use their own ``prefix``: a key another test left
    with a later ``_as_of_ms`` would (rightly) refuse these writes.
    """
    updates = []
    for i in range(n):
        entity, names = ("customer", CUSTOMER) if i % 2 == 0 else ("terminal", TERMINAL)
        updates.append(EntityValues(entity, f"{prefix}-{i}",
                                    {name: rnd.choice(values) for name in names},
                                    1_522_540_800_000 + i, f"tx-{i // 2}"))
    return updates


# -- value text, no server ---------------------------------------------------


def test_repr_texts_is_repr_for_tricky_and_random_values() -> None:
    values: list[Any] = [*TRICKY, *random_doubles(random.Random(1), 20_000), 3, -7, 0, True]
    assert repr_texts(values) == [repr(v).encode() for v in values]
    for value in values[:len(TRICKY)]:  # alone among plain values: no other token hides it
        assert repr_texts([0.5, value, 2.0]) == [b"0.5", repr(value).encode(), b"2.0"]
    assert repr_texts([]) == []


def test_repr_texts_falls_back_to_repr_for_types_orjson_refuses() -> None:
    class Sub(float):
        pass

    values = [0.5, np.float64(0.1), Sub(2.5), 1e-5]
    assert repr_texts(values) == [repr(v).encode() for v in values]


def test_number_texts_joins_the_repr_of_every_number() -> None:
    rnd = random.Random(5)
    plain = [rnd.random() * 1000 for _ in range(500)] + [0, 1_522_540_800_123, 3]
    for values in (plain, TRICKY + random_doubles(rnd, 500), [*plain, math.nan]):
        assert number_texts(values) == b",".join(repr(v).encode() for v in values)
    assert number_texts([]) == b""


def test_number_texts_refuses_a_value_whose_text_has_a_comma() -> None:
    with pytest.raises(TypeError, match="must be numbers"):
        number_texts([1.0, (2.0, 3.0)])


def test_direct_packer_sends_the_bytes_redis_py_would() -> None:
    commands: list[tuple[Any, ...]] = [
        ("HGETALL", "rtml:fs:baseline:v:customer:é"),
        ("SCRIPT LOAD", "return 1"),
        ("EVALSHA", "ab" * 20, 2, "k1", "k2", 600, b"0.1", -3, "tx-é"),
        (b"CLIENT SETINFO", "LIB-NAME", "redis-py"),
    ]
    for command in commands:
        assert DirectPacker().pack(*command) == HiredisRespSerializer().pack(*command)


# -- against a real server ----------------------------------------------------


@pytest.mark.integration
def test_write_produces_the_hashes_and_ttl_of_per_key_hsets(fresh_redis_server: Any) -> None:
    rnd = random.Random(7)
    updates = make_updates(rnd, 40, FINITE + random_doubles(rnd, 200))
    updates.append(EntityValues("customer", "ünïcode id", {CUSTOMER[0]: 1.0}, 5, "tx-é"))
    RedisOnlineStore(fresh_redis_server.url, ttl_s=TTL_S).write(BASELINE, updates)

    client = fresh_redis_server.client()
    assert client.dbsize() == len(updates)
    for update in updates:
        key = entity_key(BASELINE, update.entity, update.entity_id)
        assert client.hgetall(key) == expected_hash(update), key
        assert 0 < client.ttl(key) <= TTL_S


@pytest.mark.integration
def test_update_overwrites_fields_and_renews_the_ttl(redis_server: Any) -> None:
    store = RedisOnlineStore(redis_server.url, ttl_s=TTL_S)
    client = redis_server.client()
    key = entity_key(BASELINE, "terminal", "t-overwrite")
    first = EntityValues("terminal", "t-overwrite", {TERMINAL[0]: 1.0, TERMINAL[1]: 0.5}, 1, "a")
    store.write(BASELINE, [first])
    client.expire(key, 5)  # as if the last write was long ago
    second = EntityValues("terminal", "t-overwrite", {TERMINAL[0]: 2.0}, 2, "b")
    store.write(BASELINE, [second])
    # Fields of the new values and the event replace the old ones; a field the new
    # values lack is left as it was (HSET semantics, as before).
    assert client.hgetall(key) == {**expected_hash(first), **expected_hash(second)}
    assert client.ttl(key) > 5


@pytest.mark.integration
def test_read_round_trips_floats_bit_for_bit(redis_server: Any) -> None:
    store = RedisOnlineStore(redis_server.url, ttl_s=TTL_S)
    values = FINITE + random_doubles(random.Random(3), 50)
    updates = [EntityValues("customer", f"bits-{i}", {CUSTOMER[0]: v}, i, f"tx-{i}")
               for i, v in enumerate(values)]
    store.write(BASELINE, updates)
    found = store.read(BASELINE, [(u.entity, u.entity_id) for u in updates])
    for update, entry in zip(updates, found, strict=True):
        assert entry is not None
        sent, got = update.values[CUSTOMER[0]], entry.values[CUSTOMER[0]]
        assert struct.pack("<d", got) == struct.pack("<d", sent), (sent, got)
        assert (entry.as_of_ms, entry.transaction_id) == (update.as_of_ms, update.transaction_id)


@pytest.mark.integration
def test_batch_larger_than_a_chunk_is_written_whole_and_last_write_wins(
    fresh_redis_server: Any,
) -> None:
    rnd = random.Random(11)
    updates = make_updates(rnd, 2 * CHUNK_KEYS + 3, FINITE + random_doubles(rnd, 100))
    # The same entity in the first and the last chunk: the later (newer) update must win.
    newest = EntityValues("customer", "id-0", {name: 42.0 for name in CUSTOMER},
                          updates[0].as_of_ms + 9_999, "tx-new")
    updates.append(newest)
    RedisOnlineStore(fresh_redis_server.url, ttl_s=TTL_S).write(BASELINE, updates)

    client = fresh_redis_server.client()
    assert client.dbsize() == len(updates) - 1
    for update in updates[1:]:
        key = entity_key(BASELINE, update.entity, update.entity_id)
        assert client.hgetall(key) == expected_hash(update), key
        assert 0 < client.ttl(key) <= TTL_S


@pytest.mark.integration
@pytest.mark.parametrize("n", [1, CHUNK_KEYS + 1])
def test_a_flushed_script_is_reloaded_transparently(fresh_redis_server: Any, n: int) -> None:
    store = RedisOnlineStore(fresh_redis_server.url, ttl_s=TTL_S)
    client = fresh_redis_server.client()
    rnd = random.Random(n)
    store.write(BASELINE, make_updates(rnd, n, [1.0]))  # first write: the server lacks it too
    client.script_flush()
    assert client.script_exists(store._writer.sha) == [False]

    updates = make_updates(rnd, n, [0.25, 1e-7])
    store.write(BASELINE, updates)
    assert client.script_exists(store._writer.sha) == [True]
    for update in updates:
        key = entity_key(BASELINE, update.entity, update.entity_id)
        assert client.hgetall(key) == expected_hash(update), key


# -- split-phase writes (begin_write, then wait) -----------------------------


def in_use_connections(store: RedisOnlineStore) -> int:
    return len(store.client.connection_pool._in_use_connections)


@pytest.mark.integration
def test_begun_writes_are_stored_once_waited_and_hand_their_connection_back(
        redis_server: Any) -> None:
    store = RedisOnlineStore(redis_server.url, ttl_s=TTL_S)
    client = redis_server.client()
    rnd = random.Random(7)
    first = make_updates(rnd, CHUNK_KEYS + 3, [0.5, 1e-9], "begun")
    second = [EntityValues(u.entity, u.entity_id, dict.fromkeys(u.values, 2.0),
                           u.as_of_ms + 1, "tx-later") for u in first[:5]]
    wait_first = store.begin_write(BASELINE, first)
    wait_second = store.begin_write(BASELINE, second)  # two in flight: two connections
    assert in_use_connections(store) == 2
    wait_first()
    wait_second()
    assert in_use_connections(store) == 0
    for update in second + first[5:]:  # sent in this order: the later write wins
        key = entity_key(BASELINE, update.entity, update.entity_id)
        assert client.hgetall(key) == expected_hash(update), key
    store.begin_write(BASELINE, [])()  # nothing to send: a waiter all the same


@pytest.mark.integration
def test_an_error_reply_is_raised_by_the_waiter_and_the_connection_stays_usable(
        redis_server: Any) -> None:
    store = RedisOnlineStore(redis_server.url, ttl_s=TTL_S)
    client = redis_server.client()
    updates = make_updates(random.Random(8), 2 * CHUNK_KEYS + 1, [3.0], "error-reply")
    # The second chunk's first key holds a string: its HSET fails (WRONGTYPE).
    blocked = entity_key(BASELINE, updates[CHUNK_KEYS].entity, updates[CHUNK_KEYS].entity_id)
    client.set(blocked, "not a hash")
    wait = store.begin_write(BASELINE, updates)
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        wait()
    assert in_use_connections(store) == 0
    # Replies of the chunks around it were read too: the next write sees its own reply.
    client.delete(blocked)
    store.write(BASELINE, updates)
    for update in updates:
        key = entity_key(BASELINE, update.entity, update.entity_id)
        assert client.hgetall(key) == expected_hash(update), key


@pytest.mark.integration
def test_a_connection_lost_mid_write_is_raised_by_the_waiter(redis_server: Any) -> None:
    store = RedisOnlineStore(redis_server.url, ttl_s=TTL_S)
    wait = store.begin_write(BASELINE, make_updates(random.Random(10), 50, [1.0], "lost"))
    (connection,) = store.client.connection_pool._in_use_connections
    connection._sock.close()  # the reply (sent or not yet) can no longer be read
    with pytest.raises(RedisConnectionError):
        wait()
    assert in_use_connections(store) == 0
    updates = make_updates(random.Random(11), 3, [4.0], "after-lost")
    store.write(BASELINE, updates)  # the dropped connection is not handed out half-read
    client = redis_server.client()
    for update in updates:
        key = entity_key(BASELINE, update.entity, update.entity_id)
        assert client.hgetall(key) == expected_hash(update), key


# -- never older over newer (issue #17) ----------------------------------------


@pytest.mark.integration
def test_a_write_older_than_the_stored_as_of_changes_nothing(fresh_redis_server: Any) -> None:
    store = RedisOnlineStore(fresh_redis_server.url, ttl_s=TTL_S)
    client = fresh_redis_server.client()
    newer = EntityValues("customer", "c-order", dict.fromkeys(CUSTOMER, 2.0), 2_000, "tx-new")
    older = EntityValues("customer", "c-order", dict.fromkeys(CUSTOMER, 1.0), 1_000, "tx-old")
    key = entity_key(BASELINE, "customer", "c-order")
    store.write(BASELINE, [newer])
    client.expire(key, 50)
    store.write(BASELINE, [older])  # arrives last, happened first
    assert client.hgetall(key) == expected_hash(newer)
    assert client.ttl(key) <= 50  # not renewed either: the write did not happen
    # Same as-of (the event again, or a revision of its vector): written.
    revised = EntityValues("customer", "c-order", dict.fromkeys(CUSTOMER, 3.0), 2_000, "tx-new")
    store.write(BASELINE, [revised])
    assert client.hgetall(key) == expected_hash(revised)
    assert client.ttl(key) > 50


@pytest.mark.integration
def test_as_of_order_wins_inside_a_chunk_across_chunks_and_for_any_arrival_order(
        fresh_redis_server: Any) -> None:
    store = RedisOnlineStore(fresh_redis_server.url, ttl_s=TTL_S)
    client = fresh_redis_server.client()
    rnd = random.Random(17)
    # Five versions of each of 3 * CHUNK_KEYS entities, as-of far apart (a year 9999 one
    # among them), written in a shuffled order, spread over several chunks and calls.
    versions = [-62_135_596_800_000, 0, 1_522_540_800_000, 1_522_540_900_000,
                253_402_300_799_000]
    updates = [EntityValues("terminal", f"t-{i}", dict.fromkeys(TERMINAL, float(v)), at, f"x{v}")
               for i in range(3 * CHUNK_KEYS) for v, at in enumerate(versions)]
    rnd.shuffle(updates)
    for start in range(0, len(updates), 700):
        store.write(BASELINE, updates[start:start + 700])
    for i in range(3 * CHUNK_KEYS):
        newest = EntityValues("terminal", f"t-{i}", dict.fromkeys(TERMINAL, 4.0), versions[-1],
                              "x4")
        assert client.hgetall(entity_key(BASELINE, "terminal", f"t-{i}")) == \
            expected_hash(newest)


# -- never a non-finite value (issue #17) ---------------------------------------


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_a_non_finite_value_refuses_the_whole_write_before_sending(bad: float) -> None:
    """No server needed: the refusal comes before a connection is even taken."""
    rnd = random.Random(19)
    updates = make_updates(rnd, CHUNK_KEYS + 10, FINITE)
    poisoned = updates[CHUNK_KEYS + 3]
    poisoned.values[TERMINAL[1]] = bad
    store = RedisOnlineStore("redis://127.0.0.1:1/0", ttl_s=TTL_S)  # nothing listens there
    with pytest.raises(NonFiniteFeatureValue) as refused:
        store.begin_write(BASELINE, updates)
    message = str(refused.value)
    assert f"terminal 'id-{CHUNK_KEYS + 3}'" in message
    assert f"feature {TERMINAL[1]!r} is {bad!r}" in message
    assert poisoned.transaction_id in message


def test_values_whose_text_has_an_n_but_are_finite_are_written() -> None:
    """The byte test is only a hint: a finite value spelled with an "n" (numpy's repr)
    is looked at and let through, as before."""
    update = EntityValues("customer", "np", {CUSTOMER[0]: np.float64(0.5)}, 1, "tx")
    assert chunk_args("p:", [update], TTL_S, "_as_of_ms", "_tx")[-1].endswith(b"0.5)")


@pytest.mark.integration
def test_nothing_of_a_refused_write_reaches_redis(fresh_redis_server: Any) -> None:
    store = RedisOnlineStore(fresh_redis_server.url, ttl_s=TTL_S)
    updates = make_updates(random.Random(23), 3 * CHUNK_KEYS, FINITE)
    updates[-1].values[CUSTOMER[2]] = math.inf  # in the last chunk: the first ones too
    with pytest.raises(NonFiniteFeatureValue, match="is inf"):
        store.write(BASELINE, updates)
    assert fresh_redis_server.client().dbsize() == 0
    store.write(BASELINE, updates[:-1])  # the store still works
    assert fresh_redis_server.client().dbsize() == len(updates) - 1
