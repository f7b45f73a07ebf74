"""The generic layout's bounds: a hot entity costs a request what a quiet one does, stddev
stays exact on large amounts, and redelivery changes nothing (a real Redis)."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import random
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from rtml_features.definitions import LIFETIME, Agg, FeatureSet, WindowAggregate
from rtml_features.generic_rows import InvalidEvent
from rtml_features.online_store.redis.generic_reader import READ_SCRIPT, GenericReader
from rtml_features.online_store.redis.generic_writer import ConflictingEvent, GenericOnlineWriter
from rtml_features.oracle import _Reference
from rtml_features.request_generic import GenericRequestVectors


def _streaming_tests() -> Any:
    """The streaming tests' every-kind set and scenario generator (as test_request_generic)."""
    name = "rtml_features_stream_generic_tests"
    if name not in sys.modules:
        path = Path(__file__).with_name("test_stream_generic.py")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


STREAMING = _streaming_tests()
DAY = timedelta(days=1)
#: No trimming: writers fed one history in different orders hold the same state.
KEEP_ALL_MS = 10 * 86_400_000


def fresh(feature_set: FeatureSet) -> FeatureSet:
    return dataclasses.replace(feature_set, name=f"{feature_set.name}-{uuid.uuid4().hex[:8]}")
ORIGIN_MS = STREAMING.ORIGIN_MS


def _hot_set() -> FeatureSet:
    w, card = WindowAggregate, STREAMING.CUSTOMER
    return FeatureSet("hot", [
        w("n_1d", card, Agg.COUNT, DAY),
        w("mean_1d", card, Agg.MEAN, DAY, field="amount"),
        w("std_1d", card, Agg.STDDEV, DAY, field="amount"),
        w("max_1d", card, Agg.MAX, DAY, field="amount"),
        w("devices_1d", card, Agg.COUNT_DISTINCT, DAY, field="device_id"),
        w("last_1d", card, Agg.LAST, DAY, field="amount"),
        w("gap_1d", card, Agg.TIME_SINCE_PREVIOUS, DAY),
        w("first_1d", card, Agg.TIME_SINCE_FIRST, DAY),
        w("std_life", card, Agg.STDDEV, LIFETIME, field="amount"),
        w("min_life", card, Agg.MIN, LIFETIME, field="amount"),
        w("devices_life", card, Agg.COUNT_DISTINCT, LIFETIME, field="device_id"),
        w("age_life", card, Agg.TIME_SINCE_FIRST, LIFETIME),
        w("frauds_1d", card, Agg.SUM, DAY, field="is_fraud", label_delay=timedelta(hours=1)),
    ], schema=STREAMING.TXN)


@pytest.fixture
def client(redis_server: Any) -> Iterator[redis.Redis]:
    connection = redis_server.client()
    yield connection
    connection.close()


def _events(customer: str, n: int, span_ms: int, rnd: random.Random) -> list[dict[str, Any]]:
    """``n`` events of one customer over ``span_ms``: amounts near 10^6 with cents (a
    cancellation-prone stddev), 1,000 devices."""
    return [{"transaction_id": f"{customer}-{i:06d}", "event_time": ORIGIN_MS + i * span_ms // n,
             "customer_id": customer, "country": "FR", "device_id": f"d{rnd.randrange(1000)}",
             "amount": round(rnd.uniform(999_000.0, 1_000_000.0), 2)} for i in range(n)]


def _reply_bytes(reply: Any) -> int:
    if isinstance(reply, list):
        return sum(_reply_bytes(item) for item in reply)
    return len(reply) if isinstance(reply, bytes) else 8


def _calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def _measure(client: redis.Redis, reader: GenericReader, request: dict[str, Any]
             ) -> tuple[int, int]:
    """(reply bytes, Redis commands run) of one request's read."""
    calls, _ = reader.calls(request)
    keys = [key for k, _ in calls for key in k]
    args = [arg for _, a in calls for arg in a]
    client.script_load(READ_SCRIPT)
    before = _calls(client)
    reply = client.evalsha(reader.sha, len(keys), *keys, *args)
    return _reply_bytes(reply), _calls(client) - before - 1


def test_a_hot_entity_costs_a_request_what_a_quiet_one_does(client: redis.Redis) -> None:
    """100,000 events in the hot card's day (amounts near 10^6, 1,000 devices) against 20:
    the live request reads as many bytes and runs as many commands, within 2x, and its
    stddevs equal the two-pass reference to 1e-9."""
    rnd = random.Random(7)
    feature_set = fresh(_hot_set())
    writer = GenericOnlineWriter(feature_set, ttl_s=3_600, lateness_ms=0)
    hot, quiet = _events("hot", 100_000, 86_000_000, rnd), _events("quiet", 20, 86_000_000, rnd)
    for i, event in enumerate([*hot, *quiet]):
        writer.apply_event(event)
        if i % 2_000 == 0:
            writer.apply_label(event["transaction_id"], event["event_time"] + 60_000,
                               {"is_fraud": True})
            writer.flush(client)
    writer.flush(client)
    reader, vectors = GenericReader(client, feature_set), GenericRequestVectors(feature_set)
    t = ORIGIN_MS + 86_000_000 + 1_000
    figures = {}
    for customer in ("hot", "quiet"):
        request = {"transaction_id": f"{customer}-req", "event_time": t, "customer_id": customer,
                   "country": "FR", "device_id": "d-new", "amount": 999_999.99}
        figures[customer] = _measure(client, reader, request)
        vector = vectors.compute(request, reader.read(request))
        amounts = [e["amount"] for e in (hot if customer == "hot" else quiet)] + [999_999.99]
        mean = math.fsum(amounts) / len(amounts)
        std = math.sqrt(math.fsum((a - mean) ** 2 for a in amounts) / len(amounts))
        for name in ("std_1d", "std_life"):
            assert math.isclose(vector[name], std, rel_tol=1e-9, abs_tol=1e-9), (name, std)
        assert vector["n_1d"] == len(amounts)
        assert vector["last_1d"] == amounts[-2]
    (hot_bytes, hot_calls), (quiet_bytes, quiet_calls) = figures["hot"], figures["quiet"]
    print(f"hot: {hot_bytes} B, {hot_calls} commands; quiet: {quiet_bytes} B, "
          f"{quiet_calls} commands")
    assert hot_bytes <= 2 * quiet_bytes and hot_calls <= 2 * quiet_calls


def test_stddev_is_exact_on_large_amounts_and_long_windows(client: redis.Redis) -> None:
    """Running double-double sums of x and x**2 over 10^5 amounts up to 10^6 (and a
    nearly constant stretch): every window's stddev equals the two-pass value to 1e-9."""
    rnd = random.Random(11)
    feature_set = fresh(_hot_set())
    writer = GenericOnlineWriter(feature_set, ttl_s=3_600, lateness_ms=0)
    events = [{"transaction_id": f"s{i:06d}", "event_time": ORIGIN_MS + i * 1_000,
               "customer_id": "c", "country": "FR",
               "amount": (1e6 - 0.01 * (i % 3)) if i % 20_000 < 200
               else round(rnd.uniform(0.0, 1e6), 2)} for i in range(100_000)]
    reader, vectors = GenericReader(client, feature_set), GenericRequestVectors(feature_set)
    probes = {150, 20_150, 60_000, 99_999}
    for i, event in enumerate(events):
        if i in probes:  # the request before its event is applied, as the decision API sees it
            writer.flush(client)
            vector = vectors.compute(event, reader.read(event))
            day = [e["amount"] for e in events[:i + 1]
                   if e["event_time"] > event["event_time"] - 86_400_000]
            mean = math.fsum(day) / len(day)
            std = math.sqrt(math.fsum((a - mean) ** 2 for a in day) / len(day))
            assert math.isclose(vector["std_1d"], std, rel_tol=1e-9, abs_tol=1e-9), (i, std)
            everything = events[:i + 1]
            mean = math.fsum(e["amount"] for e in everything) / len(everything)
            std = math.sqrt(math.fsum((e["amount"] - mean) ** 2 for e in everything)
                            / len(everything))
            assert math.isclose(vector["std_life"], std, rel_tol=1e-9, abs_tol=1e-9), (i, std)
        writer.apply_event(event)
        if i % 5_000 == 0:
            writer.flush(client)


def _contents(client: redis.Redis, feature_set: FeatureSet) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(match=f"rtml:fs:{feature_set.name}:*"):
        if client.type(key) == b"zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        else:
            out[key] = client.hgetall(key)
    return out


def test_redelivery_and_replayed_writes_change_nothing(client: redis.Redis) -> None:
    scene = STREAMING.scenario(12, STREAMING._txn_event, n=120, span=4 * STREAMING.HOUR,
                               lateness=10 * STREAMING.MINUTE, label_lag=STREAMING.HOUR,
                               grid=timedelta(seconds=30))
    feature_set = fresh(STREAMING.EVERY_KIND)
    writer = GenericOnlineWriter(feature_set, ttl_s=3_600, lateness_ms=KEEP_ALL_MS)
    for kind, item, _ in scene.deliveries:
        if kind == "event":
            writer.apply_event(item)
        else:
            writer.apply_label(item["transaction_id"], item["labeled_at"],
                               {"is_fraud": item["is_fraud"]})
    assert writer.flush(client) > 0
    stored = _contents(client, feature_set)
    # Everything delivered again: no event, no label changes anything; nothing to send.
    for kind, item, _ in scene.deliveries:
        if kind == "event":
            assert not writer.apply_event(item)
        else:
            assert not writer.apply_label(item["transaction_id"], item["labeled_at"],
                                          {"is_fraud": item["is_fraud"]})
    assert writer.flush(client) == 0
    # A second writer fed the same stream sends the same writes again: same contents.
    again = GenericOnlineWriter(feature_set, ttl_s=3_600, lateness_ms=KEEP_ALL_MS)
    for kind, item, _ in scene.deliveries:
        if kind == "event":
            again.apply_event(item)
        else:
            again.apply_label(item["transaction_id"], item["labeled_at"],
                              {"is_fraud": item["is_fraud"]})
    again.flush(client)
    assert _contents(client, feature_set) == stored
    # ... and it equals a writer fed the events in time order (the layout is the history's).
    ordered = GenericOnlineWriter(feature_set, ttl_s=3_600, lateness_ms=KEEP_ALL_MS)
    for event in sorted(scene.events, key=lambda e: (e["event_time"], e["transaction_id"])):
        ordered.apply_event(event)
    for label in scene.labels:
        ordered.apply_label(label["transaction_id"], label["labeled_at"],
                            {"is_fraud": label["is_fraud"]})
    client.delete(*stored)
    ordered.flush(client)
    assert _contents(client, feature_set) == stored


def test_a_request_already_applied_counts_once(client: redis.Redis) -> None:
    """The stream applied the request's event first: it is in every window once, and
    ``last`` skips it."""
    scene = STREAMING.scenario(13, STREAMING._txn_event, n=80, span=2 * STREAMING.HOUR,
                               lateness=timedelta(0), label_lag=STREAMING.MINUTE,
                               grid=timedelta(seconds=30))
    feature_set = fresh(STREAMING.EVERY_KIND)
    writer = GenericOnlineWriter(feature_set, ttl_s=3_600)
    reader, vectors = GenericReader(client, feature_set), GenericRequestVectors(feature_set)
    history: list[dict[str, Any]] = []
    for kind, item, _ in scene.deliveries:
        if kind != "event" or not writer.apply_event(item):
            continue
        history.append(item)
        writer.flush(client)
        vector = vectors.compute(item, reader.read(item))
        expected = _Reference(feature_set, history, []).vector(len(history) - 1)
        bad = {n: (vector[n], v) for n, v in expected.items()
               if not math.isclose(vector[n], v, rel_tol=1e-9, abs_tol=1e-9)}
        assert not bad, bad


def test_invalid_and_conflicting_events_are_refused_before_any_change() -> None:
    feature_set = fresh(STREAMING.EVERY_KIND)
    writer = GenericOnlineWriter(feature_set, ttl_s=60)
    event = {"transaction_id": "a", "event_time": ORIGIN_MS, "customer_id": "c",
             "terminal_id": "m", "country": "FR", "amount": 5.0}
    assert writer.apply_event(event)
    with pytest.raises(ConflictingEvent):
        writer.apply_event(dict(event, event_time=ORIGIN_MS + 1))
    with pytest.raises(InvalidEvent):
        writer.apply_event(dict(event, transaction_id="b", amount="lots"))
    assert [len(s.events.times) for s in writer.states.values()] == [1] * len(writer.states)
    assert not writer.apply_event(event)


@pytest.mark.parametrize("name", ["rtml_features.request_generic",
                                  "rtml_features.online_store.redis.generic_layout"])
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_a_resend_rewrites_lost_keys_whole(client: redis.Redis) -> None:
    """Redis lost the set's keys (or holds stale members): ``resend`` + ``flush`` puts back
    exactly what the writer holds."""
    scene = STREAMING.scenario(14, STREAMING._txn_event, n=100, span=4 * STREAMING.HOUR,
                               lateness=10 * STREAMING.MINUTE, label_lag=STREAMING.HOUR,
                               grid=timedelta(seconds=30))
    feature_set = fresh(STREAMING.EVERY_KIND)
    writer = GenericOnlineWriter(feature_set, ttl_s=3_600, lateness_ms=20 * 60_000,
                                 trim_slack=0)
    for kind, item, _ in scene.deliveries:
        if kind == "event":
            writer.apply_event(item)
        else:
            writer.apply_label(item["transaction_id"], item["labeled_at"],
                               {"is_fraud": item["is_fraud"]})
        writer.flush(client)
    stored = _contents(client, feature_set)
    keys = list(stored)
    client.delete(*keys[: len(keys) // 2])
    kept_sets = [key for key in keys[len(keys) // 2:] if client.type(key) == b"zset"]
    client.zadd(kept_sets[0], {b"stale": 1})
    writer.resend()
    writer.flush(client)
    assert _contents(client, feature_set) == stored
