"""The feature pipeline writes both online layouts to a Redis Cluster that serve the batch vector.

3,000 simulated transactions, 5 % of them out of order within the lateness, run
through the Kafka engine with ``RTML_REDIS_URL`` a ``redis+cluster://`` URL of
the local 3-master cluster (one replica each): the prefix logs (hash-tagged
keys, one script call per entity) read as the decision API reads them must
equal the batch engine's point-in-time vectors (1e-9), the per-entity hashes
the entity's latest values, and the checkpoint (same client) must be there.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_feature_pipeline import kafka_engine
from rtml_feature_pipeline.checkpoint import checkpoint_key
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.parity import (
    batch_features,
    history_frames,
    max_abs_diff,
    request_time_vectors,
)
from rtml_features.baseline import BASELINE
from rtml_features.online_store.redis.connection import connect, slot_of
from rtml_features.online_store.redis.prefix_layout import log_keys
from rtml_features.online_store.redis.store import RedisOnlineStore
from rtml_localstack.testing import KafkaBroker
from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_simulator.replay import ReplayOptions, replay

pytestmark = [pytest.mark.integration]

N_TRANSACTIONS = 3_000


def test_the_pipeline_on_a_cluster_serves_the_batch_vector(
        tmp_path: Any, redis_cluster: Any) -> None:
    data = tmp_path / "data"
    write_dataset(simulate(SimulationConfig(n_customers=150, n_terminals=300, n_days=8,
                                            seed=31)), data)
    broker = KafkaBroker.start_new(tmp_path / "kafka", create_topics=False)
    try:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                              session_timeout_ms=6000)
        report = replay(data, ReplayOptions(
            limit=N_TRANSACTIONS, replication_factor=1, out_of_order_fraction=0.05,
            out_of_order_max=timedelta(minutes=4), pending_labels=True), kafka)
        group = f"cluster-{uuid.uuid4().hex[:8]}"
        run = kafka_engine.run(Settings(allowed_lateness_s=300, consumer_group=group,
                                        online_layout="prefix+latest", feature_set="baseline"),
                               kafka, RedisSettings(url=redis_cluster.url), max_idle_s=2,
                               install_signal_handlers=False)
    finally:
        broker.close()
    assert run.events_applied == report.transactions + report.labels
    assert run.revisions > 0  # late inserts rewrote members

    client = connect(redis_cluster.url, socket_timeout=5)
    try:
        history, labels = history_frames(data, N_TRANSACTIONS)
        batch = batch_features(history, labels)
        sample = history.sample(600, random_state=2)
        served = request_time_vectors(client, sample)
        worst, where = max_abs_diff(batch, served, BASELINE.names)
        assert worst <= 1e-9, f"max abs diff {worst} at {where}"
        # not vacuous: both entities' histories were read from their nodes
        assert served["customer_id_nb_tx_7day_window"].max() > 3
        assert served["terminal_id_nb_tx_7day_window"].max() > 3

        customer = str(sample["customer_id"].iloc[0])
        keys = log_keys(BASELINE, "customer", customer, tagged=True)
        assert client.exists(keys[0]) and len({slot_of(key) for key in keys}) == 1
        store = RedisOnlineStore(redis_cluster.url, ttl_s=60)
        [latest] = store.read(BASELINE, [("customer", customer)])
        store.close()
        last = history[history["customer_id"] == customer].sort_values(
            ["event_time", "transaction_id"]).iloc[-1]
        assert latest is not None and latest.transaction_id == last["transaction_id"]
        assert client.get(checkpoint_key(group, BASELINE.name, BASELINE.version))
    finally:
        client.close()
