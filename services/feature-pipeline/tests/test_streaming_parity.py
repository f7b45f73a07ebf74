"""Streaming engine == batch engine, through the real broker and Redis.

50,000 simulated transactions (and their labels, 7 days later in event
time) are replayed with 5 % of transactions delivered out of order within
the allowed lateness. For every transaction and each of the 15 baseline
features, the last vector the streaming engine published equals the batch
engine's point-in-time value (max abs diff <= 1e-9), every Redis entity
hash holds the batch values at that entity's newest transaction, and the
prefix logs (trimmed: 40 days) give requests after the end the batch vector.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_feature_pipeline import kafka_engine
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.parity import (
    batch_features,
    expected_entity_values,
    history_frames,
    later_requests_diff,
    max_abs_diff,
    streamed_vectors,
)
from rtml_features.baseline import BASELINE
from rtml_features.online_store.redis.store import RedisOnlineStore
from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_simulator.replay import ReplayOptions, replay

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_TRANSACTIONS = 50_000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~1,900 transactions a day over 40 days: long enough for 30-day and delayed windows."""
    directory = tmp_path_factory.mktemp("parity-data")
    write_dataset(simulate(SimulationConfig(n_customers=1000, n_terminals=2000, n_days=40,
                                            seed=7)), directory)
    return directory


def test_streaming_engine_matches_batch_with_out_of_order_delivery(
    dataset: Path, fresh_kafka_broker: Any, redis_server: Any
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    kafka = KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=6000)
    report = replay(dataset, ReplayOptions(
        limit=N_TRANSACTIONS, replication_factor=1, out_of_order_fraction=0.05,
        out_of_order_max=timedelta(minutes=4), pending_labels=True), kafka)
    assert report.transactions == N_TRANSACTIONS

    client = redis_server.client()
    client.flushdb()
    settings = Settings(allowed_lateness_s=300, consumer_group="parity",
                        online_layout="prefix+latest")  # both: the hashes are checked too
    run = kafka_engine.run(settings, kafka, RedisSettings(url=redis_server.url), max_idle_s=2,
                           install_signal_handlers=False)
    assert run.events_applied == report.transactions + report.labels
    assert run.late_events == 0  # 4-minute disorder is within the 5-minute lateness
    assert run.revisions > 0  # out-of-order arrivals did force corrections

    history, labels = history_frames(dataset, N_TRANSACTIONS)
    batch = batch_features(history, labels)
    streamed = streamed_vectors(bootstrap, run.vectors_published)
    assert len(streamed) == N_TRANSACTIONS
    worst, where = max_abs_diff(batch, streamed, BASELINE.names)
    assert worst <= 1e-9, f"max abs diff {worst} at {where}"
    # The test must not pass vacuously: terminal risk was non-zero somewhere.
    assert streamed["terminal_id_risk_30day_window"].max() > 0

    # The prefix logs, trimmed behind the watermark over 40 days: requests after the end,
    # read as the decision API reads them, equal the batch engine too.
    worst, where, later = later_requests_diff(client, history, labels, 300, seed=11)
    assert len(later) >= 200
    assert worst <= 1e-9, f"prefix logs: max abs diff {worst} at {where}"

    store = RedisOnlineStore(redis_server.url, ttl_s=3600)
    expected = expected_entity_values(batch, history)
    stored = store.read(BASELINE, list(expected))
    assert all(entry is not None for entry in stored)
    for (entity, entity_id), entry in zip(expected, stored, strict=True):
        assert entry is not None
        for name, value in expected[(entity, entity_id)].items():
            assert abs(entry.values[name] - value) <= 1e-9, (entity, entity_id, name)
