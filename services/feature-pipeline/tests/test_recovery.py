"""Crash recovery: kill -9 the feature worker mid-replay, restart it, lose and double nothing.

The worker runs as its own process (``python -m rtml_feature_pipeline``)
while a paced replay is still producing. It is SIGKILLed once it has
checkpointed part of the stream, restarted, and left to drain the topics.
The final online store must equal that of an uninterrupted run over the same
input, hash for hash and field for field — and the features topic must hold
a vector for every transaction.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_feature_pipeline import kafka_engine
from rtml_feature_pipeline.checkpoint import checkpoint_key
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.parity import redis_entity_state, streamed_vectors
from rtml_features.baseline import BASELINE
from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_simulator.pacing import Pace
from rtml_simulator.replay import ReplayOptions, replay

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_TRANSACTIONS = 20_000
GROUP = "recovery"


def worker_process(bootstrap: str, redis_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RTML_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RTML_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "RTML_REDIS_URL": redis_url,
        "RTML_FEATURE_PIPELINE_CONSUMER_GROUP": GROUP,
        "RTML_FEATURE_PIPELINE_CHECKPOINT_INTERVAL_S": "0.5",
        "RTML_FEATURE_PIPELINE_EXIT_WHEN_IDLE_S": "4",
    }
    return subprocess.Popen([sys.executable, "-m", "rtml_feature_pipeline"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def checkpointed_events(client: redis.Redis) -> int:
    raw = client.get(checkpoint_key(GROUP, BASELINE.name, BASELINE.version))
    return int(orjson.loads(raw)["events_applied"]) if raw else 0  # type: ignore[arg-type]


def test_kill_9_mid_replay_converges_to_the_uninterrupted_state(
    tmp_path: Path, fresh_kafka_broker: Any, redis_server: Any
) -> None:
    write_dataset(simulate(SimulationConfig(n_customers=600, n_terminals=1200, n_days=40,
                                            seed=11)), tmp_path)
    bootstrap = fresh_kafka_broker.bootstrap_servers
    kafka = KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=6000)
    crashed_db = redis_server.url.rsplit("/", 1)[0] + "/1"
    reference_db = redis_server.url.rsplit("/", 1)[0] + "/2"
    for url in (crashed_db, reference_db):
        redis.Redis.from_url(url).flushdb()
    crashed = redis.Redis.from_url(crashed_db)

    # A paced replay keeps producing while the worker runs and is killed.
    options = ReplayOptions(limit=N_TRANSACTIONS, replication_factor=1, pace=Pace.rate(3000))
    producer_thread = threading.Thread(target=replay, args=(tmp_path, options, kafka))
    producer_thread.start()

    first = worker_process(bootstrap, crashed_db)
    deadline = time.monotonic() + 90
    while checkpointed_events(crashed) < 2 * N_TRANSACTIONS // 5:
        assert first.poll() is None, first.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, "worker never checkpointed 40 % of the stream"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    killed_at = checkpointed_events(crashed)
    assert producer_thread.is_alive(), "the replay ended before the kill: not mid-replay"

    second = worker_process(bootstrap, crashed_db)
    producer_thread.join(timeout=120)
    _, stderr = second.communicate(timeout=180)
    assert second.returncode == 0, stderr.decode()[-3000:]
    assert b"restored checkpoint" in stderr
    total_events = checkpointed_events(crashed)
    assert killed_at < total_events

    # The uninterrupted reference: same input, own group, own database.
    reference = kafka_engine.run(Settings(consumer_group="reference"), kafka,
                                 RedisSettings(url=reference_db), max_idle_s=2,
                                 install_signal_handlers=False)
    assert reference.events_applied == total_events  # each event applied once after restart

    after_crash = redis_entity_state(crashed)
    uninterrupted = redis_entity_state(redis.Redis.from_url(reference_db))
    assert len(uninterrupted) > 1000
    assert after_crash == uninterrupted
    # Every transaction got a vector (duplicates from the replayed tail are allowed).
    assert len(streamed_vectors(bootstrap)) == N_TRANSACTIONS
