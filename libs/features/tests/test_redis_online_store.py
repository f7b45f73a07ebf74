"""The Redis online store against a real Redis server."""

from typing import Any

import pytest

from rtml_features.baseline import BASELINE
from rtml_features.online_store.base import EntityValues, entity_features
from rtml_features.online_store.redis.store import RedisOnlineStore, entity_key

pytestmark = pytest.mark.integration


def test_write_read_round_trip_is_exact_and_unknown_is_none(redis_server: Any) -> None:
    store = RedisOnlineStore(redis_server.url, ttl_s=120)
    names = entity_features(BASELINE, BASELINE.entities[0])
    values = {name: 0.1 + i / 3 for i, name in enumerate(names)}  # not exactly representable
    store.write(BASELINE, [EntityValues("customer", "c-1", values, 1_522_540_800_123, "tx-9")])
    [found, missing] = store.read(BASELINE, [("customer", "c-1"), ("customer", "nobody")])
    assert missing is None
    assert found is not None
    assert found.values == values  # repr(float) round-trips bit for bit
    assert (found.as_of_ms, found.transaction_id) == (1_522_540_800_123, "tx-9")
    key = entity_key(BASELINE, "customer", "c-1")
    assert BASELINE.version in key
    assert 0 < redis_server.client().ttl(key) <= 120


def test_last_write_wins_and_is_idempotent(redis_server: Any) -> None:
    store = RedisOnlineStore(redis_server.url, ttl_s=120)
    first = EntityValues("terminal", "t-1", {"terminal_id_nb_tx_1day_window": 1.0}, 1, "a")
    second = EntityValues("terminal", "t-1", {"terminal_id_nb_tx_1day_window": 2.0}, 2, "b")
    store.write(BASELINE, [first, second])
    store.write(BASELINE, [second])
    [found] = store.read(BASELINE, [("terminal", "t-1")])
    assert found is not None
    assert found.values == {"terminal_id_nb_tx_1day_window": 2.0}
    assert found.transaction_id == "b"
