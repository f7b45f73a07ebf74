"""The streaming computer's prefix logs, written to a real Redis, equal the batch engine.

The computer keeps one :class:`EntityLogState` per entity next to its
:class:`EntityState` (same events, labels, eviction cut-offs). Streams here
span ~80 days with an idle stretch, so states are evicted, trimmed and dropped
(their keys deleted) and entities come back; labels arrive before and after
their transactions. Requests at times at or after the stream's end, read as the
decision API reads them, must equal the batch engine; a restore from a
snapshot, after a "crashed" run wrote past it in another order, must leave
Redis exactly as an uninterrupted run does.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
import redis

from rtml_features.baseline import BASELINE
from rtml_features.batch import compute_features
from rtml_features.definitions import FeatureSet
from rtml_features.extended import EXTENDED
from rtml_features.online_store.redis.prefix_layout import MEMBER_SPELLING
from rtml_features.online_store.redis.prefix_reader import PrefixLogReader
from rtml_features.online_store.redis.prefix_writer import PrefixLogWriter
from rtml_features.request_vector import RequestVectors
from rtml_features.stream import LateEvent, StreamingFeatureComputer, restore, snapshot

pytestmark = pytest.mark.integration

DAY = 86_400_000
START = int(datetime(2018, 4, 1, tzinfo=UTC).timestamp() * 1000)
LATENESS = timedelta(minutes=5)
#: (applied at, kind, payload): a transaction (tid, customer, terminal, t, amount) or a
#: label (tid, customer, terminal, transaction t, labeled_at, is_fraud).
Event = tuple[int, str, tuple[Any, ...]]


def stream(seed: int) -> tuple[list[Event], pd.DataFrame, pd.DataFrame]:
    """Events in the order a pipeline applies them, and the batch engine's frames."""
    rng = random.Random(seed)
    rows, label_rows, events = [], [], []
    t = START
    for i in range(600):
        # ~40 busy days, a 40-day pause (only c0, c1, t0, t1 come back), then ~60 more.
        t += rng.randint(1, 8 * 3_600_000) if i != 250 else 40 * DAY
        customer = f"c{rng.randrange(4 if i < 250 else 2)}"
        terminal = f"t{rng.randrange(5 if i < 250 else 2)}"
        amount = round(rng.uniform(0, 300), 2)
        tid = f"{i:05d}"
        rows.append((tid, t, customer, terminal, amount))
        # Jitter within the lateness: some arrive after later transactions.
        events.append((t + rng.randint(0, 240_000), "tx", (tid, customer, terminal, t, amount)))
        if rng.random() < 0.4:
            labeled_at = t + rng.randint(0, 9 * DAY)
            fraud = rng.random() < 0.5
            label_rows.append((tid, labeled_at, fraud))
            # One in five labels is read before its transaction (labels partition ahead).
            applied = t - 1 if rng.random() < 0.2 else labeled_at
            events.append((applied, "label", (tid, customer, terminal, t, labeled_at, fraud)))
    events.sort(key=lambda e: (e[0], e[1] == "tx"))
    history = pd.DataFrame(rows, columns=["transaction_id", "ms", "customer_id", "terminal_id",
                                          "amount"])
    history["event_time"] = pd.to_datetime(history.pop("ms"), unit="ms", utc=True)
    labels = pd.DataFrame(label_rows, columns=["transaction_id", "ms", "is_fraud"])
    labels["labeled_at"] = pd.to_datetime(labels.pop("ms"), unit="ms", utc=True)
    return events, history, labels


def apply(computer: StreamingFeatureComputer, writer: PrefixLogWriter, events: list[Event],
          every: int = 7, skip_late: bool = False) -> None:
    """Apply events, writing the touched logs every ``every`` events (a batch)."""
    for n, (_, kind, payload) in enumerate(events, 1):
        if kind == "tx":
            tid, customer, terminal, t, amount = payload
            try:
                computer.on_transaction(tid, customer, terminal, t, amount)
            except LateEvent:
                if not skip_late:
                    raise
        else:
            tid, customer, terminal, t, labeled_at, fraud = payload
            computer.on_label(tid, customer, terminal, t, labeled_at, fraud)
        if n % every == 0:
            writer.write(computer.take_touched_logs())
    writer.write(computer.take_touched_logs())


def new_computer(feature_set: FeatureSet = BASELINE) -> StreamingFeatureComputer:
    return StreamingFeatureComputer(feature_set, LATENESS, sweep_every=timedelta(days=3),
                                    prefix_logs=True)


def zsets(client: redis.Redis) -> dict[str, Any]:
    return {key: client.zrange(key, 0, -1, withscores=True)
            for key in sorted(client.scan_iter("rtml:fs:*"))}


@pytest.fixture
def databases(redis_server: Any) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    base = redis_server.url.rsplit("/", 1)[0]
    clients = redis.Redis.from_url(f"{base}/3"), redis.Redis.from_url(f"{base}/4")
    for client in clients:
        client.flushdb()
    yield clients
    for client in clients:
        client.flushdb()
        client.close()


def check_requests(client: redis.Redis, history: pd.DataFrame, labels: pd.DataFrame,
                   feature_set: FeatureSet = BASELINE) -> int:
    """Requests of every (customer, terminal) pair at and after the end == batch."""
    reader, vectors = PrefixLogReader(client, feature_set), RequestVectors(feature_set)
    end = int(history["event_time"].max().timestamp() * 1000)
    checked = 0
    for offset in (0, 6 * DAY + 17, 31 * DAY):
        for customer in sorted(history["customer_id"].unique()):
            for terminal in sorted(history["terminal_id"].unique()):
                request = pd.DataFrame({
                    "transaction_id": ["request"], "customer_id": [customer],
                    "terminal_id": [terminal], "amount": [12.5],
                    "event_time": [pd.Timestamp(end + offset, unit="ms", tz="UTC")]})
                expected = compute_features(feature_set, request, pd.concat(
                    [history, request[history.columns]], ignore_index=True), labels).iloc[0]
                logs = reader.read("request", end + offset,
                                   {"customer_id": customer, "terminal_id": terminal})
                served = vectors.compute("request", end + offset, {"amount": 12.5}, logs)
                for name in feature_set.names:
                    assert abs(served[name] - expected[name]) <= 1e-9, (offset, customer,
                                                                        terminal, name)
                checked += 1
    return checked


@pytest.mark.parametrize("feature_set", [BASELINE, EXTENDED], ids=lambda fs: fs.name)
def test_logs_through_eviction_and_dropped_states_equal_batch(
        databases: tuple[redis.Redis, redis.Redis], feature_set: FeatureSet) -> None:
    client, _ = databases
    events, history, labels = stream(seed=1)
    computer = new_computer(feature_set)
    apply(computer, PrefixLogWriter(client, feature_set, ttl_s=3600), events)
    # Not vacuous: the entities that never came back were dropped, their keys deleted;
    # the others' logs were trimmed past their start.
    assert computer.logs is not None
    back = {("customer", "c0"), ("customer", "c1"), ("terminal", "t0"), ("terminal", "t1")}
    assert set(computer.logs) == back
    assert {(key.split(b":")[-2].decode(), key.split(b":")[-1].decode())
            for key in zsets(client)} == back
    assert all(log.events.first_seq > 1 for log in computer.logs.values())
    assert check_requests(client, history, labels, feature_set) >= 60


@pytest.mark.parametrize("feature_set", [BASELINE, EXTENDED], ids=lambda fs: fs.name)
def test_a_restore_after_a_crash_leaves_redis_as_an_uninterrupted_run(
        databases: tuple[redis.Redis, redis.Redis], feature_set: FeatureSet) -> None:
    crashed, reference = databases
    events, history, labels = stream(seed=2)
    cut = len(events) // 2
    first = new_computer(feature_set)
    writer = PrefixLogWriter(crashed, feature_set, ttl_s=3600)
    apply(first, writer, events[:cut])
    saved = json.loads(json.dumps(snapshot(first)))  # as a checkpoint stores it
    # The crashed run went on past the checkpoint, in another order, then died.
    apply(first, writer, sorted(events[cut:cut + 120], key=lambda e: e[2][0], reverse=True),
          skip_late=True)
    second = new_computer(feature_set)
    restore(second, saved)
    apply(second, writer, events[cut:])

    apply(new_computer(feature_set), PrefixLogWriter(reference, feature_set, ttl_s=3600), events)
    assert zsets(crashed) == zsets(reference)
    assert check_requests(crashed, history, labels, feature_set) >= 60


def test_a_checkpoint_without_logs_rebuilds_them_from_the_state(
        databases: tuple[redis.Redis, redis.Redis]) -> None:
    client, _ = databases
    events, history, labels = stream(seed=3)
    cut = len(events) // 2
    first = new_computer()
    writer = PrefixLogWriter(client, BASELINE, ttl_s=3600)
    apply(first, writer, events[:cut])
    saved = json.loads(json.dumps(snapshot(first)))
    del saved["logs"]  # an older worker's checkpoint, or one of the 'latest' layout
    client.flushdb()  # and whatever Redis held is not what the rebuilt logs hold
    second = new_computer()
    restore(second, saved)
    apply(second, writer, events[cut:])
    assert check_requests(client, history, labels) >= 60


def test_logs_saved_with_another_member_spelling_are_written_again_whole(
        databases: tuple[redis.Redis, redis.Redis]) -> None:
    """An upgrade that changes the member texts: every restored log replaces its keys at
    the first delivery, also the logs of entities no new event touches."""
    client, _ = databases
    events, history, labels = stream(seed=4)
    first = new_computer()
    writer = PrefixLogWriter(client, BASELINE, ttl_s=3600)
    apply(first, writer, events)
    saved = json.loads(json.dumps(snapshot(first)))
    assert saved["logs_spelling"] == MEMBER_SPELLING
    written = zsets(client)
    # What an older worker left: the same entries with other member texts.
    old_texts = {key: [(member.replace(b"|", b"|old,"), score) for member, score in members]
                 for key, members in written.items()}
    client.flushdb()
    for key, members in old_texts.items():
        client.zadd(key, {member: score for member, score in members})
    saved["logs_spelling"] = MEMBER_SPELLING - 1

    second = new_computer()
    restore(second, saved)
    assert second.logs is not None and second.logs_pending()
    writer.write(second.take_touched_logs())  # the first delivery, no new event
    assert zsets(client) == written  # every key replaced, no old text left
    assert check_requests(client, history, labels) >= 60

    same = new_computer()  # the current spelling: nothing to write again
    restore(same, json.loads(json.dumps(snapshot(first))))
    assert not same.logs_pending()
