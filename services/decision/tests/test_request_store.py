"""The request store against a real Redis: one round trip claims, queued writes ride along."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis

from rtml_decision.request_store import (
    DECIDED,
    PENDING,
    RedisUnavailable,
    RequestStore,
    Stored,
    decision_key,
)
from rtml_features.baseline import BASELINE, CUSTOMER
from rtml_features.online_store.redis.prefix_writer import EntityLogState, PrefixLogWriter
from rtml_features.request_vector import log_spec
from rtml_localstack.ports import free_port

pytestmark = pytest.mark.integration

MINE, OTHER = b"m" * 16, b"o" * 16


def test_a_record_without_a_fingerprint_is_served_unchecked() -> None:
    """Decisions stored before fingerprints existed stay valid replays."""
    legacy = Stored.parse(b'{"outcome":"approve"}')
    assert legacy == Stored(None, b'{"outcome":"approve"}')
    assert not legacy.conflicts_with(MINE)
    assert Stored.parse(PENDING) == Stored(None, None)


def test_lookup_claims_returns_log_views_and_carries_queued_writes(redis_server: Any) -> None:
    customer, first, second = (uuid.uuid4().hex for _ in range(3))
    plain = redis.Redis.from_url(redis_server.url)
    state = EntityLogState(log_spec(BASELINE, CUSTOMER))
    for i in range(3):
        state.add_event(f"e{i}", 1_000 * i, {"amount": 2.0})
    PrefixLogWriter(plain, BASELINE, ttl_s=600).write([("customer", customer, state)])
    store = RequestStore.from_url(redis_server.url, BASELINE, ttl_s=600, timeout_s=1.0)

    async def scenario() -> None:
        lookup = store.lookup(first, MINE, 5_000, {"customer_id": customer, "terminal_id": None})
        assert lookup.stored is None  # we hold the claim now
        assert set(lookup.entities) == {"customer"}  # no terminal id: not read
        events, labels = lookup.entities["customer"]
        assert events is not None and labels is None  # a customer has no label log
        assert events.count(5_000 - 86_400_000, 5_000) == 3
        assert events.total("amount", 5_000 - 86_400_000, 5_000) == 6.0
        assert not events.has(first, 5_000)
        assert plain.get(decision_key(first)) == PENDING + MINE
        claimed = store.lookup(first, OTHER, 5_000, {"customer_id": customer})
        assert claimed.stored == Stored(MINE, None)  # pending, and whose
        assert claimed.stored.conflicts_with(OTHER) and not claimed.stored.conflicts_with(MINE)

        store.record(first, MINE, b'{"first":1}')
        plain.script_flush()  # a restarted Redis forgot the script: still one answer
        again = store.lookup(first, MINE, 5_000, {"customer_id": customer})  # the write rides along
        assert again.stored == Stored(MINE, b'{"first":1}')

        store.record(second, MINE, b'{"second":2}')
        await asyncio.sleep(0.05)  # no lookup came: the timer wrote it alone
        assert plain.get(decision_key(second)) == DECIDED + MINE + b'{"second":2}'

    asyncio.run(scenario())
    store.close()
    plain.close()


def test_after_a_failure_lookups_fail_fast_for_the_cool_down() -> None:
    store = RequestStore.from_url(f"redis://127.0.0.1:{free_port()}/0", BASELINE, ttl_s=600,
                                  timeout_s=0.2)
    with pytest.raises(redis.ConnectionError) as first:
        store.lookup("tx", MINE, 0, {"customer_id": "c"})
    assert not isinstance(first.value, RedisUnavailable)
    with pytest.raises(RedisUnavailable):
        store.lookup("tx", MINE, 0, {"customer_id": "c"})
    store.close()
