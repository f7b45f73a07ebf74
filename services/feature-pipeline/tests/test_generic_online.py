"""The generic online layout written by the worker serves request-time vectors of a
non-classic set equal to the batch engine's.

The payments example set (``RTML_FEATURE_REPO``) is served with the ``prefix+latest``
layout: the worker writes the generic layout (:mod:`rtml_feature_pipeline.generic_store`)
besides the ``latest`` hashes. A small rich simulation's payments and labels (5 % held
back within the lateness) are produced in two halves, the worker run after each: the
second run restores the writer from the first run's checkpoint. Then, for a sample of
payments, the vector requested at the payment's own time from one read of what the worker
wrote (:class:`GenericReader` + :class:`GenericRequestVectors`, everything applied, as
``libs/features/tests/test_request_generic.py`` requests each event again) equals
``compute_features(PAYMENTS, ...)`` to 1e-9, every feature; and Redis holds exactly the
writer state of the last checkpoint.

A ``python -m rtml_feature_pipeline`` process killed with SIGKILL mid-stream (vectors
published after its last checkpoint) and restarted from its checkpoint leaves in Redis
exactly the generic layout its writer holds (every key, member, score and meta field
equal to that state written whole into an empty db: nothing the killed run wrote after
the checkpoint is left beside what the replay wrote), and serves the batch engine's
vectors. Not compared with an uninterrupted run's keys: the writer's state depends on
the order partitions interleave in (when logs are trimmed), which differs between two
runs even without a crash; what both must serve is the same vectors.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_feature_pipeline import kafka_engine
from rtml_feature_pipeline.checkpoint import Checkpoint, checkpoint_key
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.crash_probe import pipeline_env, published_since_checkpoint
from rtml_feature_pipeline.generic_parity import (
    PAYMENTS_REPO,
    RichData,
    batch_vectors,
    payments_set,
    produce,
    rich_data,
    schedule,
)
from rtml_feature_pipeline.generic_store import GenericStore
from rtml_feature_pipeline.worker import GENERIC_LAYOUT_KEY, FeatureWorker
from rtml_features.definitions import FeatureSet
from rtml_features.online_store.redis.generic_layout import key_prefix
from rtml_features.online_store.redis.generic_reader import GenericReader
from rtml_features.online_store.redis.generic_writer import GenericOnlineWriter
from rtml_features.prefix_log import OutOfRange
from rtml_features.request_generic import GenericRequestVectors
from rtml_features.rows import epoch_ms
from rtml_localstack.crash import ServiceProcess, wait_until

pytestmark = [pytest.mark.integration]

SAMPLE = 400


def request_mismatches(client: redis.Redis, feature_set: FeatureSet, data: RichData,
                       sample: int = SAMPLE) -> tuple[int, list[Any]]:
    """Request a sample of payments at their own time from the store; (how many values
    were compared, the ones differing from the batch engine's by more than 1e-9).

    The writer trims each entity's logs to its horizon plus the lateness behind its newest
    event (what a request at the current time reads; 32 entries of slack): an older
    payment some log no longer reaches is refused by the read (``OutOfRange``), never
    answered wrongly, and skipped here; at least half the sample must be compared."""
    batch = batch_vectors(feature_set, data)
    time_field = feature_set.schema.event_time
    events = data.events()
    chosen = random.Random(11).sample(events, min(sample, len(events)))
    reader, vectors = GenericReader(client, feature_set), GenericRequestVectors(feature_set)
    compared, bad, skipped = 0, [], 0
    for fields in chosen:
        event = {**fields, time_field: epoch_ms(fields[time_field])}
        try:
            got = vectors.compute(event, reader.read(event))
        except OutOfRange:
            skipped += 1
            continue
        want = batch.loc[fields["transaction_id"]]
        for name in feature_set.names:
            compared += 1
            if not abs(got[name] - float(want[name])) <= 1e-9:
                bad.append((fields["transaction_id"], name, got[name], float(want[name])))
    assert skipped <= len(chosen) // 2, f"{skipped} of {len(chosen)} payments out of range"
    return compared, bad


def test_request_vectors_from_the_workers_generic_layout_equal_batch(
        fresh_kafka_broker: Any, fresh_redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RTML_FEATURE_REPO", str(PAYMENTS_REPO))
    feature_set = payments_set()
    data = rich_data()
    records = schedule(feature_set, data)
    kafka = KafkaSettings(bootstrap_servers=fresh_kafka_broker.bootstrap_servers,
                          session_timeout_ms=6000)
    redis_settings = RedisSettings(url=fresh_redis_server.url)
    settings = Settings(feature_set="payments", online_layout="prefix+latest",
                        allowed_lateness_s=300, consumer_group="generic-online")
    workers: list[FeatureWorker] = []
    half = len(records) // 2
    produce(kafka, records[:half])
    first = kafka_engine.run(settings, kafka, redis_settings, max_idle_s=2,
                             install_signal_handlers=False, on_worker=workers.append)
    produce(kafka, records[half:])
    second = kafka_engine.run(settings, kafka, redis_settings, max_idle_s=2,
                              install_signal_handlers=False, on_worker=workers.append)
    assert second.resumed_from_checkpoint
    assert first.events_applied > 0 and second.events_applied == len(records)
    assert all(isinstance(w.generic_writer, GenericStore) for w in workers)
    restored = workers[1].generic_writer
    assert isinstance(restored, GenericStore) and restored.entities() > 0

    client = redis.Redis.from_url(fresh_redis_server.url)
    assert client.keys(f"{key_prefix(feature_set)}@g*"), "no generic layout key written"
    assert_holds_checkpointed_layout(client, fresh_redis_server.url, feature_set,
                                     "generic-online")
    compared, bad = request_mismatches(client, feature_set, data)
    assert compared >= 100 * len(feature_set.names)
    assert not bad, (len(bad), bad[:10])


def layout_contents(client: redis.Redis, prefix: str) -> dict[bytes, Any]:
    """Every generic layout key's contents (sorted sets with scores, hashes); its keys are
    ``<prefix>@g...`` (the ``latest`` hashes share the prefix)."""
    out: dict[bytes, Any] = {}
    for key in sorted(client.scan_iter(match=f"{prefix}@g*", count=1_000)):
        kind = client.type(key)
        if kind == b"zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"hash":
            out[key] = sorted(client.hgetall(key).items())
        else:
            out[key] = (kind, client.dump(key))
    return out


def assert_holds_checkpointed_layout(client: redis.Redis, url: str, feature_set: FeatureSet,
                                     group: str) -> None:
    """Redis's generic layout keys equal the group's last checkpointed writer state
    written whole into an empty db (db 1 of the same server)."""
    raw = client.get(checkpoint_key(group, feature_set.name, feature_set.version))
    assert raw
    state = Checkpoint.from_bytes(raw).state  # type: ignore[arg-type]
    held = GenericStore(GenericOnlineWriter(feature_set, 3600, lateness_ms=300_000))
    held.restore(state[GENERIC_LAYOUT_KEY])
    held.resend()
    reference = redis.Redis.from_url(url.rsplit("/", 1)[0] + "/1")
    reference.flushdb()
    held.flush(reference)
    prefix = key_prefix(feature_set)
    want, got = layout_contents(reference, prefix), layout_contents(client, prefix)
    assert want, "the checkpointed writer holds no generic layout"
    assert set(got) == set(want), (sorted(set(got) ^ set(want))[:10])
    differing = [key for key in want if got[key] != want[key]]
    assert not differing, (len(differing), [
        (key, sorted(set(got[key]) - set(want[key]))[:4],
         sorted(set(want[key]) - set(got[key]))[:4]) for key in differing[:3]])


GROUP = "generic-online-crash"


def test_kill_9_leaves_the_generic_layout_an_uninterrupted_run_writes(
        tmp_path: Path, fresh_kafka_broker: Any, fresh_redis_server: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_FEATURE_REPO", str(PAYMENTS_REPO))
    feature_set = payments_set()
    data = rich_data()
    records = schedule(feature_set, data)
    bootstrap = fresh_kafka_broker.bootstrap_servers
    kafka = KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=6000)
    crashed_url = fresh_redis_server.url
    client = redis.Redis.from_url(crashed_url)
    env = {**pipeline_env(bootstrap, crashed_url, GROUP, checkpoint_interval_s=3.0,
                          feature_set=feature_set),
           "RTML_FEATURE_REPO": str(PAYMENTS_REPO),
           "RTML_FEATURE_PIPELINE_ONLINE_LAYOUT": "prefix",
           "RTML_FEATURE_PIPELINE_ALLOWED_LATENESS_S": "300"}
    worker = ServiceProcess("rtml_feature_pipeline", env, tmp_path / "logs")
    producing = threading.Thread(target=produce, args=(kafka, records, 400.0))
    producing.start()
    worker.start()
    try:
        wait_until(lambda: published_since_checkpoint(client, kafka, GROUP, feature_set) >= 100,
                   60, "vectors published after a checkpoint", [worker])
        worker.kill9()
        worker.start()
        producing.join(timeout=60)
        assert worker.wait_exit(90) == 0, worker.tail()
    finally:
        worker.close()

    # Redis holds exactly what the restarted worker's writer held at its last checkpoint:
    # no member the killed run wrote after its checkpoint is left beside the replay's.
    assert_holds_checkpointed_layout(client, fresh_redis_server.url, feature_set, GROUP)
    # And it serves the batch engine's vectors, like an uninterrupted run.
    _, bad = request_mismatches(client, feature_set, data, sample=150)
    assert not bad, (len(bad), bad[:10])
