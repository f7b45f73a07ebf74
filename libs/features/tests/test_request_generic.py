"""Request-time vectors over the generic Redis layout equal the oracle, for every definition.

A real Redis (the ``redis_server`` fixture): a :class:`GenericOnlineWriter` applies a
randomized stream out of order (events beyond a request's time already stored,
simultaneous events, redeliveries, labels late, before their event, twice), flushing
after each delivery; before each event is first applied, its vector at its own time is
computed from one read (:class:`GenericReader` + :class:`GenericRequestVectors`) and
must equal :mod:`rtml_features.oracle` over what the store holds plus the request,
to 1e-9. Feature sets: one with every aggregation, row kind, compound entity,
LIFETIME window and label delay (the streaming tests' ``EVERY_KIND``), and the
payments example.
"""

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

from rtml_features.definitions import FeatureSet
from rtml_features.online_store.redis.connection import Client
from rtml_features.online_store.redis.generic_reader import GenericReader
from rtml_features.online_store.redis.generic_writer import GenericOnlineWriter
from rtml_features.oracle import _Reference
from rtml_features.request_generic import GenericRequestVectors


def _streaming_tests() -> Any:
    """The streaming tests' every-kind set and scenario generator (one definition of both)."""
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
MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)


def fresh(feature_set: FeatureSet) -> FeatureSet:
    """The set under a name of its own: its keys cannot meet another test's."""
    return dataclasses.replace(feature_set, name=f"{feature_set.name}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def client(redis_server: Any) -> Iterator[redis.Redis]:
    connection = redis_server.client()
    yield connection
    connection.close()


def close(actual: dict[str, float], expected: dict[str, float]) -> list[str]:
    return [f"{name}: {actual[name]!r} != {value!r}" for name, value in expected.items()
            if not math.isclose(actual[name], value, rel_tol=1e-9, abs_tol=1e-9)]


def replay(client: Client, feature_set: FeatureSet, scene: Any,
           lateness_ms: int = 3_600_000, trim_slack: int = 32,
           label_horizon_ms: int = 60 * 86_400_000) -> int:
    """Deliver the scenario; check every event's request vector before it is applied.

    Returns how many requests saw events stored after their time (the corrections ran).
    """
    schema = feature_set.schema
    writer = GenericOnlineWriter(feature_set, ttl_s=3_600, lateness_ms=lateness_ms,
                                 trim_slack=trim_slack, label_horizon_ms=label_horizon_ms)
    reader = GenericReader(client, feature_set)
    vectors = GenericRequestVectors(feature_set)
    applied: dict[str, dict[str, Any]] = {}
    labels: list[dict[str, Any]] = []
    beyond = 0
    for kind, item, _ in scene.deliveries:
        if kind == "label":
            writer.apply_label(item["transaction_id"], item["labeled_at"],
                               {"is_fraud": item["is_fraud"]})
            labels.append(item)
            writer.flush(client)
            continue
        tid = item[schema.id_field]
        if tid not in applied:
            vector = vectors.compute(item, reader.read(item))
            history = [*applied.values(), item]
            known = [label for label in labels if label["transaction_id"] in applied]
            expected = _Reference(feature_set, history, known).vector(len(history) - 1)
            assert not close(vector, expected), (tid, close(vector, expected))
            beyond += any(e[schema.event_time] > item[schema.event_time]
                          for e in applied.values())
            assert writer.apply_event(item)
            applied[tid] = item
        else:
            assert not writer.apply_event(item)  # a redelivery changes nothing
        writer.flush(client)
    return beyond


@pytest.mark.parametrize("seed", [1, 2])
def test_every_kind_at_request_time_equals_the_oracle(client: redis.Redis, seed: int) -> None:
    scene = STREAMING.scenario(seed, STREAMING._txn_event, n=160, span=6 * STREAMING.HOUR,
                               lateness=10 * STREAMING.MINUTE, label_lag=STREAMING.HOUR,
                               grid=STREAMING.timedelta(seconds=30))
    assert replay(client, fresh(STREAMING.EVERY_KIND), scene) > 20


def test_every_kind_with_trimmed_logs_equals_the_oracle(client: redis.Redis) -> None:
    """A short lateness and no trim slack: logs are trimmed all along the stream, LIFETIME
    windows then rest on the running sums, prefix extremes and kept scalars."""
    scene = STREAMING.scenario(3, STREAMING._txn_event, n=160, span=10 * STREAMING.HOUR,
                               lateness=5 * STREAMING.MINUTE, label_lag=20 * STREAMING.MINUTE,
                               grid=STREAMING.timedelta(minutes=1))
    feature_set = fresh(STREAMING.EVERY_KIND)
    replay(client, feature_set, scene, lateness_ms=10 * 60_000, trim_slack=0)


@pytest.mark.parametrize("seed", [5, 6])
def test_payments_at_request_time_equals_the_oracle(client: redis.Redis, seed: int) -> None:
    scene = STREAMING.scenario(seed, STREAMING._payment_event, n=140,
                               span=12 * STREAMING.DAY, lateness=6 * STREAMING.HOUR,
                               label_lag=9 * STREAMING.DAY,
                               grid=STREAMING.timedelta(minutes=5))
    assert replay(client, fresh(STREAMING._payments()), scene, lateness_ms=8 * 3_600_000) > 10


def test_every_kind_on_a_redis_cluster_equals_the_oracle(redis_cluster: Any) -> None:
    """Tagged keys (an entity's keys in one slot), one script call per entity in per-node
    pipelines, for both the writer and the reader."""
    from rtml_features.online_store.redis.connection import connect

    client = connect(redis_cluster.url)
    try:
        scene = STREAMING.scenario(4, STREAMING._txn_event, n=90, span=3 * STREAMING.HOUR,
                                   lateness=10 * STREAMING.MINUTE, label_lag=STREAMING.HOUR,
                                   grid=STREAMING.timedelta(seconds=30))
        assert replay(client, fresh(STREAMING.EVERY_KIND), scene) > 5
    finally:
        client.close()


@pytest.mark.parametrize("seed", range(200, 206))
def test_small_streams_under_varied_settings_equal_the_oracle(client: redis.Redis,
                                                              seed: int) -> None:
    """Short streams, each with its own lateness, label lag and time grain (a second to ten
    minutes: few or many simultaneous events); logs trimmed as tightly as the lateness
    allows (no slack)."""
    rnd = random.Random(seed)
    lateness = rnd.choice([timedelta(0), MINUTE, 10 * MINUTE, 45 * MINUTE])
    label_lag = rnd.choice([MINUTE, HOUR, 4 * HOUR])
    scene = STREAMING.scenario(seed, STREAMING._txn_event, n=70,
                               span=rnd.choice([HOUR, 6 * HOUR]), lateness=lateness,
                               label_lag=label_lag,
                               grid=rnd.choice([timedelta(seconds=1), MINUTE, 10 * MINUTE]))
    ms = timedelta(milliseconds=1)
    replay(client, fresh(STREAMING.EVERY_KIND), scene, lateness_ms=lateness // ms,
           trim_slack=0, label_horizon_ms=(label_lag + lateness) // ms)


@pytest.mark.parametrize(("make_set", "make_event", "span", "label_lag"), [
    (lambda: STREAMING.EVERY_KIND, STREAMING._txn_event, 8 * HOUR, 4 * HOUR),
    (STREAMING._payments, STREAMING._payment_event, 12 * STREAMING.DAY, 9 * STREAMING.DAY),
], ids=["every_kind", "payments"])
def test_replayed_requests_equal_the_batch_engines(client: redis.Redis, make_set: Any,
                                                   make_event: Any, span: timedelta,
                                                   label_lag: timedelta) -> None:
    """Everything applied first (events and labels well after every request's time), then
    each event requested again at its own time: the store's later events and labels are
    what each read must see past — count_distinct corrections, labels known later,
    the request already in its windows — and every vector equals the batch engine's
    (:func:`rtml_features.batch.compute_features`) on 300 events."""
    feature_set = fresh(make_set())
    scene = STREAMING.scenario(8, make_event, n=300, span=span, lateness=10 * MINUTE,
                               label_lag=label_lag, grid=timedelta(seconds=30))
    writer = GenericOnlineWriter(feature_set, ttl_s=3_600,
                                 lateness_ms=span // timedelta(milliseconds=1))
    for kind, item, _ in scene.deliveries:
        if kind == "event":
            writer.apply_event(item)
        else:
            writer.apply_label(item["transaction_id"], item["labeled_at"],
                               {"is_fraud": item["is_fraud"]})
    writer.flush(client)
    reader, vectors = GenericReader(client, feature_set), GenericRequestVectors(feature_set)
    mismatches = []
    for event, expected in zip(scene.events, STREAMING.batch_vectors(feature_set, scene),
                               strict=True):
        got = vectors.compute(event, reader.read(event))
        mismatches += [(event["transaction_id"], problem) for problem in close(got, expected)]
    assert not mismatches, f"{len(mismatches)} values differ, e.g. {mismatches[:5]}"
