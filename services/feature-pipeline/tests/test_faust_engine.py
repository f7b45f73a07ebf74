"""The Faust engine against a real Kafka-protocol broker and Redis.

One simulated data set is replayed in two slices (days 0-9, then 10-19) with
one malformed record, and the Faust engine runs after each slice. Checked:

1. every transaction's ``features`` event equals the batch engine
   (:func:`rtml_features.batch.compute_features`) on the same data;
2. the malformed record is in ``transactions.dlq`` with its reason;
3. the restart after slice 1 reads exactly slice 2 (nothing twice);
4. after rewinding the checkpoint to slice 1's, as if the process had died
   after committing slice 2 but before checkpointing it, the engine re-reads
   slice 2 from the checkpoint's offsets (not the group's committed ones);
5. the Redis entity hashes are exactly what the confluent-kafka engine writes
   for the same input.

A unit test (no servers) covers the retry / poison-isolation path.

Faust joins a group in about half the session timeout (3 s at 6 s) and the
runs stop after ``IDLE_S`` without input, so the test takes ~45 s.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pandas as pd
import pytest
import redis

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_common.events import Transaction
from rtml_common.kafka.admin import ensure_topics
from rtml_common.kafka.consumer import Record
from rtml_common.kafka.dead_letter import DeadLetter
from rtml_common.kafka.producer import EventProducer
from rtml_common.serde import headers_for
from rtml_feature_pipeline import faust_engine, kafka_engine
from rtml_feature_pipeline.checkpoint import Checkpoint, checkpoint_key
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.parity import redis_entity_state
from rtml_features.baseline import get_feature_set
from rtml_features.batch import compute_features
from rtml_localstack.crash import duplicates, published_keys
from rtml_localstack.testing import consume
from rtml_simulator import SimulationConfig, read_transactions, simulate, write_dataset
from rtml_simulator.replay import ReplayOptions, replay

IDLE_S = 2.0
MALFORMED = b'{"transaction_id":"bad","amount":-1}'
FAUST_GROUP = "rtml-fp-faust-test"
KAFKA_GROUP = "rtml-fp-kafka-test"


def redis_url(server: Any, db: int) -> str:
    return f"redis://{server.host}:{server.port}/{db}"


def entity_hashes(url: str) -> dict[str, Any]:
    """Every online-store key: the hashes and the prefix logs (their members)."""
    client = redis.Redis.from_url(url)
    try:
        return redis_entity_state(client)
    finally:
        client.close()


def committed_offsets(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets on the input partitions (read without joining)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        wanted = [TopicPartition(topic, p) for topic in ("transactions", "labels")
                  for p in range(4)]
        return {(tp.topic, tp.partition): tp.offset
                for tp in consumer.committed(wanted, timeout=10) if tp.offset >= 0}
    finally:
        consumer.close()


def batch_features(data_dir: Path, names: list[str]) -> pd.DataFrame:
    """The batch engine's values for every transaction of the data set."""
    table = read_transactions(data_dir, ["transaction_id", "tx_datetime", "customer_id",
                                         "terminal_id", "tx_amount", "tx_fraud"]).to_pandas()
    history = pd.DataFrame({
        "transaction_id": table["transaction_id"].astype(str),
        "event_time": pd.to_datetime(table["tx_datetime"], utc=True),
        "customer_id": table["customer_id"].astype(str),
        "terminal_id": table["terminal_id"].astype(str),
        "amount": table["tx_amount"].astype(float),
    })
    labels = pd.DataFrame({
        "transaction_id": history["transaction_id"],
        "labeled_at": history["event_time"] + pd.Timedelta(days=7),
        "is_fraud": table["tx_fraud"].astype(bool),
    })
    feature_set = get_feature_set("baseline")
    result = compute_features(feature_set, history, history, labels)
    return result.set_index("transaction_id")[names]


def streamed_features(bootstrap: str, n: int) -> pd.DataFrame:
    """The ``features`` topic, the highest revision per transaction."""
    best: dict[str, tuple[int, dict[str, float]]] = {}
    for record in consume(bootstrap, "features", n, timeout_s=30):
        vector = orjson.loads(record.value or b"{}")
        tx_id, revision = vector["transaction_id"], vector["revision"]
        if tx_id not in best or revision >= best[tx_id][0]:
            best[tx_id] = (revision, vector["features"])
    return pd.DataFrame.from_dict({k: v for k, (_, v) in best.items()}, orient="index")


@pytest.mark.integration
def test_faust_engine_matches_batch_and_kafka_engine_and_resumes_from_checkpoint(
    fresh_kafka_broker: Any, redis_server: Any, tmp_path: Path,
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, replication_factor=1)
    kafka = KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=6000,
                          poll_timeout_s=0.05, retry_backoff_s=0.01)
    faust_redis = RedisSettings(url=redis_url(redis_server, 3))
    kafka_redis = RedisSettings(url=redis_url(redis_server, 4))
    for settings in (faust_redis, kafka_redis):
        redis.Redis.from_url(settings.url).flushdb()
    faust_settings = Settings(consumer_group=FAUST_GROUP)

    data = tmp_path / "data"
    write_dataset(simulate(SimulationConfig(n_customers=200, n_terminals=400, n_days=20,
                                            seed=3)), data)

    # -- slice 1 (with a malformed record), first run --------------------------
    first = replay(data, ReplayOptions(days=10, replication_factor=1), kafka)
    with EventProducer(kafka) as producer:
        producer.send_raw("transactions", b"0", MALFORMED, headers_for(Transaction))
    run1 = faust_engine.run(faust_settings, kafka, faust_redis, max_idle_s=IDLE_S,
                            install_signal_handlers=False)
    assert run1.loop.consumed == first.events + 1
    assert run1.loop.dead_lettered == 1
    assert run1.events_applied == first.events
    assert not run1.resumed_from_checkpoint

    [dead] = [DeadLetter.from_parts(r.topic, r.key, r.value, r.headers)
              for r in consume(bootstrap, "transactions.dlq", 1, timeout_s=20)]
    assert dead.value == MALFORMED
    assert dead.error_type == "DecodeError"
    assert dead.consumer_group == FAUST_GROUP
    assert "amount" in dead.reason

    feature_set = get_feature_set("baseline")
    checkpoints = redis.Redis.from_url(faust_redis.url)
    key = checkpoint_key(FAUST_GROUP, feature_set.name, feature_set.version)
    checkpoint_after_slice_1 = checkpoints.get(key)
    assert checkpoint_after_slice_1

    # -- slice 2, restart: reads exactly the new records -----------------------
    second = replay(data, ReplayOptions(start_day=10, days=10, replication_factor=1), kafka)
    run2 = faust_engine.run(faust_settings, kafka, faust_redis, max_idle_s=IDLE_S,
                            install_signal_handlers=False)
    assert run2.resumed_from_checkpoint
    assert run2.loop.consumed == second.events  # nothing of slice 1 twice
    assert run2.events_applied == first.events + second.events
    # Committed after processing, up to exactly what the final checkpoint covers.
    saved = Checkpoint.from_bytes(checkpoints.get(key) or b"")
    assert committed_offsets(bootstrap, FAUST_GROUP) == saved.offsets

    n_transactions = first.transactions + second.transactions
    streamed = streamed_features(bootstrap, run1.vectors_published + run2.vectors_published)
    assert len(streamed) == n_transactions
    expected = batch_features(data, feature_set.names)
    diff = (expected - streamed.loc[expected.index, feature_set.names]).abs()
    assert diff.to_numpy().max() <= 1e-9, diff.max()

    # -- crash after commit, before checkpoint: the checkpoint's offsets win ---
    checkpoints.set(key, checkpoint_after_slice_1)
    run3 = faust_engine.run(faust_settings, kafka, faust_redis, max_idle_s=IDLE_S,
                            install_signal_handlers=False)
    assert run3.loop.consumed == second.events
    # Slice 2 is applied again but not published again: run 2 had published its vectors
    # after the restored checkpoint's output positions, so the replay suppresses them
    # (rtml_feature_pipeline.republish); no (transaction, revision) is on the topic twice.
    assert run3.vectors_published < second.transactions
    assert run3.events_applied == first.events + second.events
    checkpoints.close()
    vectors = published_keys(bootstrap, "features",
                             lambda v: (v["transaction_id"], v["revision"]))
    assert duplicates(vectors) == 0
    assert len({tx for tx, _ in vectors}) == n_transactions

    # -- the confluent-kafka engine writes the same Redis state ----------------
    reference = kafka_engine.run(Settings(consumer_group=KAFKA_GROUP), kafka, kafka_redis,
                                 max_idle_s=IDLE_S, install_signal_handlers=False)
    assert reference.events_applied == first.events + second.events
    faust_hashes, kafka_hashes = entity_hashes(faust_redis.url), entity_hashes(kafka_redis.url)
    assert any(":customer:" in k for k in faust_hashes)
    assert any(":terminal:" in k for k in faust_hashes)
    assert any(":@ev:terminal:" in k for k in faust_hashes)  # the prefix logs too
    assert faust_hashes == kafka_hashes


class _RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list[Any]]] = []

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None,
                 headers: Any = None) -> None:
        self.sent.append((topic, key, value, list(headers or ())))

    def flush(self, timeout_s: float | None = None) -> None:
        pass


class _PickyWorker:
    """Fails every batch holding the poison record; remembers what it applied."""

    def __init__(self) -> None:
        self.offsets: dict[tuple[str, int], int] = {}
        self.applied: list[int] = []

    def cover(self, next_offsets: dict[tuple[str, int], int]) -> None:
        for key, offset in next_offsets.items():
            self.offsets[key] = max(self.offsets.get(key, 0), offset)

    def handle(self, records: list[Record[Any]]) -> None:
        if any(r.value == "poison" for r in records):
            raise RuntimeError("feature store rejected it")
        self.applied.extend(r.offset for r in records)


def test_poison_record_is_retried_then_dead_lettered_alone(tmp_path: Path) -> None:
    producer, worker = _RecordingProducer(), _PickyWorker()
    kafka = KafkaSettings(max_retries=2, retry_backoff_s=0)
    messages = [SimpleNamespace(topic="transactions", partition=1, offset=offset,
                                key=b"c1", value=b"raw-%d" % offset)
                for offset in range(10, 15)]
    records = [Record("transactions", 1, m.offset, m.key, "poison" if m.offset == 12 else "ok",
                      [], 0) for m in messages]

    async def go() -> faust_engine.FaustEngine:
        engine = faust_engine.FaustEngine(Settings(consumer_group="g"), kafka,
                                          cast(Any, worker), cast(Any, producer), str(tmp_path))
        sources = [faust_engine._SourceRecord(m, [("rtml-event-type", b"Transaction")])
                   for m in messages]
        await engine._handle_with_retries(records, sources)
        return engine

    engine = asyncio.run(go())
    assert worker.applied == [10, 11, 13, 14]
    [(topic, key, value, headers)] = producer.sent
    dead = DeadLetter.from_parts(topic, key, value, headers)
    assert (dead.source_topic, dead.source_partition, dead.source_offset) == ("transactions", 1, 12)
    assert dead.value == b"raw-12" and dead.consumer_group == "g" and dead.attempts == 3
    assert dead.reason == "handler error after 3 attempts: RuntimeError: feature store rejected it"
    assert ("rtml-event-type", b"Transaction") in dead.original_headers
    assert engine.stats.retries == 4 and engine.stats.dead_lettered == 1
    assert engine.stats.handled == 4
    assert worker.offsets == {("transactions", 1): 13}  # the dead letter counts as covered
