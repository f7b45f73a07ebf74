"""A burst followed by silence is checkpointed without waiting for the next record.

Issue #17 finding 7: the worker checkpointed only while handling a batch, so
after a burst the checkpoint stayed behind (195k events) until traffic
resumed, and a crash in the silence replayed all of it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_common.events import Transaction
from rtml_common.kafka.consumer import Record
from rtml_common.kafka.producer import EventProducer
from rtml_common.serde import encode, headers_for
from rtml_common.topics import spec_for_event
from rtml_feature_pipeline import faust_engine, kafka_engine
from rtml_feature_pipeline.checkpoint import Checkpoint
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.inputs import decode_transaction_input
from rtml_feature_pipeline.kafka_engine import build_worker
from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_simulator.replay import ReplayOptions, replay

pytestmark = pytest.mark.integration

TOPIC = spec_for_event(Transaction).name
HEADERS = headers_for(Transaction)


def burst(n: int) -> list[Record[Any]]:
    """``n`` transactions of one partition, a second apart."""
    records = []
    for i in range(n):
        event = Transaction(transaction_id=f"idle-{i}", customer_id=f"c{i % 7}",
                            terminal_id=f"t{i % 5}", amount=10.0 + i,
                            event_time=f"2018-04-01T14:{i // 60:02d}:{i % 60:02d}Z")
        records.append(Record(TOPIC, 0, i, b"c", decode_transaction_input(encode(event), HEADERS),
                              HEADERS, 1))
    return records


def saved(client: redis.Redis, key: str) -> Checkpoint:
    raw = client.get(key)
    assert raw, "no checkpoint saved"
    return Checkpoint.from_bytes(raw)  # type: ignore[arg-type]


def test_checkpoint_if_due_saves_what_the_last_batch_applied(
        fresh_kafka_broker: Any, fresh_redis_server: Any) -> None:
    kafka = KafkaSettings(bootstrap_servers=fresh_kafka_broker.bootstrap_servers)
    worker = build_worker(Settings(consumer_group="idle-unit", checkpoint_interval_s=3), kafka,
                          RedisSettings(url=fresh_redis_server.url), EventProducer(kafka))
    assert worker.checkpoints is not None
    client, key = worker.checkpoints.client, worker.checkpoints.key
    worker.computer.expect_sources([f"{TOPIC}:0"])
    assert worker.recover() is None
    assert saved(client, key).events_applied == 0  # the first run starts a checkpoint at once

    worker.handle(burst(200))  # ... then silence: no batch will come to checkpoint it
    assert saved(client, key).events_applied == 0
    deadline = time.monotonic() + 30
    while not worker.checkpoint_if_due():
        assert time.monotonic() < deadline, "the idle checkpoint never came"
        time.sleep(0.05)
    after = saved(client, key)
    assert after.events_applied == 200
    assert after.offsets == {(TOPIC, 0): 200}
    assert after.published is not None  # where the outputs ended, for the next restart

    # Still idle, nothing new: due again, but the same blob is not rewritten.
    client.delete(key)
    deadline = time.monotonic() + 30
    while time.monotonic() - worker._last_checkpoint < worker.checkpoint_interval_s:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert worker.checkpoint_if_due() is False
    assert client.get(key) is None


@pytest.mark.parametrize("engine_run", [kafka_engine.run, faust_engine.run],
                         ids=["kafka", "faust"])
def test_the_engines_checkpoint_a_burst_while_idle(
        engine_run: Any, tmp_path: Path, fresh_kafka_broker: Any,
        fresh_redis_server: Any) -> None:
    write_dataset(simulate(SimulationConfig(n_customers=50, n_terminals=100, n_days=10,
                                            seed=3)), tmp_path)
    kafka = KafkaSettings(bootstrap_servers=fresh_kafka_broker.bootstrap_servers,
                          session_timeout_ms=6000, batch_size=100)
    replay(tmp_path, ReplayOptions(limit=500, replication_factor=1), kafka)
    # The first batch after the group join checkpoints (the interval has passed since
    # start-up); the rest of the burst takes well under the interval, so only the idle
    # path can checkpoint its end before the engine exits.
    settings = Settings(consumer_group="idle-engine", checkpoint_interval_s=2)
    workers: list[Any] = []
    engine = threading.Thread(target=engine_run, kwargs={
        "settings": settings, "kafka": kafka,
        "redis_settings": RedisSettings(url=fresh_redis_server.url), "max_idle_s": 8,
        "install_signal_handlers": False, "on_worker": workers.append}, daemon=True)
    engine.start()
    deadline = time.monotonic() + 60
    while not workers or worker_checkpointed(workers[0]) < workers[0].events_applied or \
            workers[0].events_applied < 500:
        assert time.monotonic() < deadline, "the burst was never checkpointed while idle"
        time.sleep(0.05)
    assert engine.is_alive(), "checkpointed only on the way out, not while idle"
    engine.join(60)


def worker_checkpointed(worker: Any) -> int:
    checkpoint = worker.checkpoints.load()
    return checkpoint.events_applied if checkpoint else -1
