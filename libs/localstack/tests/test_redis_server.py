"""The local Redis, through redis-py."""

from __future__ import annotations

import uuid

import pytest

from rtml_localstack.testing import RedisServer

pytestmark = pytest.mark.integration


def test_write_and_read_hash_and_expiry(redis_server: RedisServer) -> None:
    key = f"features:{uuid.uuid4().hex}"
    client = redis_server.client(decode_responses=True)
    try:
        with client.pipeline() as pipe:
            pipe.hset(key, mapping={"count_1d": "3", "mean_amount_1d": "12.5"})
            pipe.expire(key, 60)
            pipe.execute()
        assert client.hgetall(key) == {"count_1d": "3", "mean_amount_1d": "12.5"}
        assert 0 < client.ttl(key) <= 60
        assert client.hincrby(key, "count_1d", 2) == 5
    finally:
        client.delete(key)
        client.close()


def test_url_and_port_agree_and_bind_loopback(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis_server.client()
    try:
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert client.config_get("save")["save"] == ""
    finally:
        client.close()
