"""Kill -9 of a worker serving a non-classic set: nothing lost, nothing published twice.

The payments example set (``RTML_FEATURE_REPO``) is served by a ``python -m
rtml_feature_pipeline`` process while a small rich simulation's payments and labels
are produced at a steady rate (5 % of each held back within the lateness). Once
vectors published after its last checkpoint are on the topic (the case that
duplicates without the republish suppression), the process is SIGKILLed, restarted
from the generic computer's checkpoint, and left to drain. Then ``features`` holds
each (transaction, revision) once, every payment, and each payment's last vector
equals the batch engine's; the ``latest`` hashes hold the batch values.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from rtml_common.config import KafkaSettings
from rtml_feature_pipeline.crash_probe import pipeline_env, published_since_checkpoint
from rtml_feature_pipeline.generic_parity import (
    PAYMENTS_REPO,
    batch_vectors,
    expected_latest,
    payments_set,
    produce,
    rich_data,
    schedule,
)
from rtml_feature_pipeline.parity import streamed_vectors
from rtml_features.online_store.redis.store import RedisOnlineStore
from rtml_localstack.crash import ServiceProcess, duplicates, published_keys, wait_until

pytestmark = [pytest.mark.integration]

GROUP = "generic-crash"
#: Vectors on the topic beyond the last checkpoint's positions when the worker is killed.
PUBLISHED_AFTER_CHECKPOINT = 200


def test_kill_9_mid_stream_loses_and_duplicates_nothing(
        tmp_path: Path, fresh_kafka_broker: Any, fresh_redis_server: Any) -> None:
    feature_set = payments_set()
    data = rich_data()
    records = schedule(feature_set, data)
    bootstrap = fresh_kafka_broker.bootstrap_servers
    kafka = KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=6000)
    url = fresh_redis_server.url
    client = redis.Redis.from_url(url)

    env = {**pipeline_env(bootstrap, url, GROUP, checkpoint_interval_s=5.0,
                          feature_set=feature_set),
           "RTML_FEATURE_REPO": str(PAYMENTS_REPO),
           "RTML_FEATURE_PIPELINE_ONLINE_LAYOUT": "latest",
           "RTML_FEATURE_PIPELINE_ALLOWED_LATENESS_S": "300"}
    worker = ServiceProcess("rtml_feature_pipeline", env, tmp_path / "logs")
    # Paced, so vectors keep arriving between checkpoints until the kill.
    producing = threading.Thread(target=produce, args=(kafka, records, 250.0))
    producing.start()
    worker.start()
    try:
        wait_until(lambda: published_since_checkpoint(client, kafka, GROUP, feature_set)
                   >= PUBLISHED_AFTER_CHECKPOINT,
                   60, "vectors published after a checkpoint", [worker])
        worker.kill9()
        worker.start()
        producing.join(timeout=60)
        assert worker.wait_exit(90) == 0, worker.tail()
    finally:
        worker.close()
    log = worker.log()
    found = re.search(r"after the checkpoint, (\d+) vectors", log)
    assert found, log[-3000:]
    assert int(found.group(1)) > 0, "the kill left nothing published after the checkpoint"

    vectors = published_keys(bootstrap, "features",
                             lambda v: (v["transaction_id"], v["revision"]))
    assert duplicates(vectors) == 0, [k for k, n in vectors.items() if n > 1][:10]
    payments = set(data.history["transaction_id"])
    assert {tx for tx, revision in vectors if revision == 0} == payments
    assert {tx for tx, _ in vectors} == payments
    assert any(revision > 0 for _, revision in vectors)
    late = published_keys(bootstrap, "transactions.late", lambda v: v["transaction_id"])
    assert duplicates(late) == 0

    streamed = streamed_vectors(bootstrap, len(vectors), feature_set=feature_set)
    batch = batch_vectors(feature_set, data)
    names = feature_set.names
    diff = np.abs(streamed.loc[batch.index, names].to_numpy(dtype=np.float64)
                  - batch[names].to_numpy(dtype=np.float64))
    bad = np.argwhere(diff > 1e-9)
    detail = [(batch.index[i], names[j], streamed.loc[batch.index[i], names[j]],
               batch.iloc[i][names[j]],
               sorted(r for t, r in vectors if t == batch.index[i])) for i, j in bad[:15]]
    assert diff.max() <= 1e-9, (len(bad), detail)

    latest = expected_latest(feature_set, data, batch)
    keys = list(latest)
    store = RedisOnlineStore(url, ttl_s=3600)
    for (entity, entity_id), entry in zip(keys, store.read(feature_set, keys), strict=True):
        assert entry is not None, (entity, entity_id)
        for name, value in latest[(entity, entity_id)].items():
            assert abs(entry.values[name] - value) <= 1e-9, (entity, entity_id, name)
