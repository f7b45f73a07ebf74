"""Kill -9 mid-stream publishes nothing twice: each (transaction, revision) once on ``features``.

Issue #17 finding 7: a worker killed after a checkpoint re-published, on
restart, every vector it had sent between that checkpoint and the crash
(22,679 identical revision-0 vectors for 100k transactions). The worker runs
as its own process, is SIGKILLed once vectors published *after* its last
checkpoint are on the topic (the case that duplicated), restarted, and left
to drain. Then the ``features`` topic must hold every transaction exactly
once per revision, ``transactions.late`` nothing twice, and Redis must equal
an uninterrupted run's.

The idle checkpoint is tested in ``test_idle_checkpoint.py``.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_feature_pipeline import kafka_engine
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.crash_probe import pipeline_env, published_since_checkpoint
from rtml_feature_pipeline.parity import redis_entity_state
from rtml_localstack.crash import ServiceProcess, duplicates, published_keys, wait_until
from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_simulator.pacing import Pace
from rtml_simulator.replay import ReplayOptions, replay

pytestmark = [pytest.mark.integration]

N_TRANSACTIONS = 5000
GROUP = "crash-duplicates"
#: Vectors on the topic beyond the last checkpoint's positions when the worker is killed.
PUBLISHED_AFTER_CHECKPOINT = 300


def test_kill_9_publishes_each_vector_once_and_converges(
    tmp_path: Path, fresh_kafka_broker: Any, fresh_redis_server: Any
) -> None:
    write_dataset(simulate(SimulationConfig(n_customers=300, n_terminals=600, n_days=30,
                                            seed=17)), tmp_path)
    bootstrap = fresh_kafka_broker.bootstrap_servers
    kafka = KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=6000)
    base = fresh_redis_server.url.rsplit("/", 1)[0]
    crashed_db, reference_db = f"{base}/1", f"{base}/2"
    crashed = redis.Redis.from_url(crashed_db)

    # The stream must outlast the worker's start-up and the kill: paced so that vectors keep
    # arriving between checkpoints (3 s apart) instead of a burst the worker drains, checkpoints
    # while idle and exits on before the condition below is seen.
    worker = ServiceProcess("rtml_feature_pipeline",
                            pipeline_env(bootstrap, crashed_db, GROUP, checkpoint_interval_s=3.0),
                            tmp_path / "logs")
    options = ReplayOptions(limit=N_TRANSACTIONS, replication_factor=1, pace=Pace.rate(500))
    producing = threading.Thread(target=replay, args=(tmp_path, options, kafka))
    producing.start()
    worker.start()
    try:
        wait_until(lambda: published_since_checkpoint(crashed, kafka, GROUP)
                   >= PUBLISHED_AFTER_CHECKPOINT,
                   60, "vectors published after a checkpoint", [worker])
        worker.kill9()
        worker.start()
        producing.join(timeout=60)
        assert worker.wait_exit(120) == 0, worker.tail()
    finally:
        worker.close()
    log = worker.log()
    found = re.search(r"after the checkpoint, (\d+) vectors", log)
    assert found, log[-3000:]
    assert int(found.group(1)) > 0, "the kill left nothing published after the checkpoint"

    # Read before the reference run below adds its own vectors to the topic.
    vectors = published_keys(bootstrap, "features",
                             lambda v: (v["transaction_id"], v["revision"]))
    assert duplicates(vectors) == 0, [k for k, n in vectors.items() if n > 1][:10]
    assert len({tx for tx, revision in vectors if revision == 0}) == N_TRANSACTIONS
    assert {tx for tx, _ in vectors} == {tx for tx, revision in vectors if revision == 0}
    late = published_keys(bootstrap, "transactions.late", lambda v: v["transaction_id"])
    assert duplicates(late) == 0

    reference = kafka_engine.run(Settings(consumer_group="reference"), kafka,
                                 RedisSettings(url=reference_db), max_idle_s=2,
                                 install_signal_handlers=False)
    assert reference.events_applied > N_TRANSACTIONS
    assert redis_entity_state(crashed) == redis_entity_state(redis.Redis.from_url(reference_db))
