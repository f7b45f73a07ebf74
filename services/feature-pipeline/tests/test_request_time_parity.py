"""Request-time vectors from the Redis prefix logs == the batch engine, through the real
broker and Redis.

~16 simulated days (and all their labels, 7 days later in event time: those known
only after the last transaction at the end) are replayed with 5 % of transactions
out of order within the allowed lateness, through the
feature pipeline writing the ``prefix`` layout only. Then, read as the decision
API reads them (one script call per request, :mod:`rtml_features.request_vector`):

* a request at each sampled transaction's own time — the transaction being
  in the log is what ``has`` handles: the vector is the one a request just
  before the pipeline applied it would get; the labels known after it are in
  the logs and must not count — equals the batch engine's point-in-time vector
  (every feature, max abs diff <= 1e-9);
* requests for new transactions at times at or after every entity's last
  event (up to 10 days later: labels known by then count, windows empty out)
  equal the batch engine's vector of that request added to the history.

The data span stays under the shortest horizon, so no log is trimmed and every
transaction's time can be asked after the fact; trimmed logs are checked at
later request times by ``test_recovery.py`` (40 days, across a kill -9).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_feature_pipeline import kafka_engine
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.parity import (
    batch_features,
    history_frames,
    later_requests_diff,
    max_abs_diff,
    request_time_vectors,
)
from rtml_features.baseline import BASELINE
from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_simulator.replay import ReplayOptions, replay

pytestmark = [pytest.mark.integration]

N_TRANSACTIONS = 15_000
SAMPLE = 3_000


def test_prefix_logs_serve_the_batch_vector_at_request_time(
    tmp_path: Path, fresh_kafka_broker: Any, redis_server: Any
) -> None:
    write_dataset(simulate(SimulationConfig(n_customers=500, n_terminals=1000, n_days=18,
                                            seed=23)), tmp_path)
    bootstrap = fresh_kafka_broker.bootstrap_servers
    kafka = KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=6000)
    report = replay(tmp_path, ReplayOptions(
        limit=N_TRANSACTIONS, replication_factor=1, out_of_order_fraction=0.05,
        out_of_order_max=timedelta(minutes=4), pending_labels=True), kafka)
    assert report.transactions == N_TRANSACTIONS

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    settings = Settings(allowed_lateness_s=300, consumer_group="request-parity",
                        online_layout="prefix")
    run = kafka_engine.run(settings, kafka, RedisSettings(url=redis_server.url), max_idle_s=2,
                           install_signal_handlers=False)
    assert run.events_applied == report.transactions + report.labels
    assert run.late_events == 0 and run.revisions > 0  # disorder within the lateness
    # The prefix layout only: sorted sets, no per-entity hash.
    types = {client.type(key) for key in client.scan_iter("rtml:fs:*")}
    assert types == {b"zset"}

    history, labels = history_frames(tmp_path, N_TRANSACTIONS)
    span = history["event_time"].max() - history["event_time"].min()
    assert span < timedelta(days=30)  # nothing trimmed: every time is answerable
    batch = batch_features(history, labels)
    sample = history.sample(SAMPLE, random_state=5)
    served = request_time_vectors(client, sample)
    assert len(served) == SAMPLE
    worst, where = max_abs_diff(batch, served, BASELINE.names)
    assert worst <= 1e-9, f"max abs diff {worst} at {where}"
    # Not vacuous: label-delayed windows held known frauds, out-of-order events were in.
    assert served["terminal_id_risk_30day_window"].max() > 0
    assert served["customer_id_nb_tx_30day_window"].max() > 10

    worst, where, later = later_requests_diff(client, history, labels, 300, seed=3)
    assert len(later) >= 200
    assert worst <= 1e-9, f"max abs diff {worst} at {where}"
    assert (later["terminal_id_nb_tx_7day_window"] > 1).any()  # history counted, not only self
