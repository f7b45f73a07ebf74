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

The same replay is then computed with the ``extended`` feature set selected by
configuration (``RTML_FEATURE_PIPELINE_FEATURE_SET=extended``) and both online
layouts: its prefix logs (sparse tables for the customer's min / max, a customer
label log, terminal amount sums) are held to the same checks, and so are its
published vectors and its per-entity hashes; the Faust engine, selected the
same way over a smaller replay, publishes the same vectors and logs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_feature_pipeline import faust_engine, kafka_engine
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.parity import (
    batch_features,
    expected_entity_values,
    history_frames,
    later_requests_diff,
    max_abs_diff,
    request_time_vectors,
    streamed_vectors,
)
from rtml_features.baseline import BASELINE
from rtml_features.extended import EXTENDED
from rtml_features.online_store.redis.store import RedisOnlineStore, key_prefix
from rtml_localstack.crash import records_published
from rtml_localstack.testing import KafkaBroker
from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_simulator.replay import ReplayOptions, ReplayReport, replay

pytestmark = [pytest.mark.integration]

N_TRANSACTIONS = 15_000
SAMPLE = 3_000


@dataclass
class Replayed:
    """~16 days replayed once into a broker this module's tests share (each its own group)."""

    data: Path
    kafka: KafkaSettings
    report: ReplayReport


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayed]:
    data = tmp_path_factory.mktemp("request-parity-data")
    write_dataset(simulate(SimulationConfig(n_customers=500, n_terminals=1000, n_days=18,
                                            seed=23)), data)
    broker = KafkaBroker.start_new(tmp_path_factory.mktemp("request-parity-kafka"),
                                   create_topics=False)
    try:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                              session_timeout_ms=6000)
        report = replay(data, ReplayOptions(
            limit=N_TRANSACTIONS, replication_factor=1, out_of_order_fraction=0.05,
            out_of_order_max=timedelta(minutes=4), pending_labels=True), kafka)
        assert report.transactions == N_TRANSACTIONS
        yield Replayed(data, kafka, report)
    finally:
        broker.close()


def _run(replayed: Replayed, redis_url: str, **settings: Any) -> kafka_engine.EngineRun:
    run = kafka_engine.run(Settings(allowed_lateness_s=300, **settings), replayed.kafka,
                           RedisSettings(url=redis_url), max_idle_s=2,
                           install_signal_handlers=False)
    assert run.events_applied == replayed.report.transactions + replayed.report.labels
    assert run.late_events == 0 and run.revisions > 0  # disorder within the lateness
    return run


def test_prefix_logs_serve_the_batch_vector_at_request_time(
    replayed: Replayed, redis_server: Any
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    _run(replayed, redis_server.url, consumer_group="request-parity", online_layout="prefix")
    # The prefix layout only: sorted sets, no per-entity hash.
    types = {client.type(key) for key in client.scan_iter("rtml:fs:*")}
    assert types == {b"zset"}

    history, labels = history_frames(replayed.data, N_TRANSACTIONS)
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


def test_the_extended_set_selected_by_config_matches_batch_in_every_output(
    replayed: Replayed, redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Selected as a deployment selects it (the environment), written in both layouts:
    published vectors, prefix logs at request time and entity hashes == the batch engine."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    monkeypatch.setenv("RTML_FEATURE_PIPELINE_FEATURE_SET", "extended")
    run = _run(replayed, redis_server.url, consumer_group="request-parity-extended",
               online_layout="prefix+latest")
    assert {key.decode().startswith(key_prefix(EXTENDED)) for key in
            client.scan_iter("rtml:fs:*")} == {True}  # no other set's keys

    history, labels = history_frames(replayed.data, N_TRANSACTIONS)
    batch = batch_features(history, labels, EXTENDED)
    bootstrap = replayed.kafka.bootstrap_servers
    published = streamed_vectors(bootstrap, records_published(bootstrap, "features"),
                                 feature_set=EXTENDED)  # the baseline test's are there too
    assert len(published) == N_TRANSACTIONS <= run.vectors_published
    worst, where = max_abs_diff(batch, published, EXTENDED.names)
    assert worst <= 1e-9, f"published vectors: max abs diff {worst} at {where}"
    # Not vacuous: the customer's range is a range, and the week's max is not the month's.
    minimum = published["customer_id_min_amount_30day_window"]
    assert (minimum < published["customer_id_max_amount_30day_window"]).mean() > 0.5
    assert (published["customer_id_max_amount_7day_window"]
            < published["customer_id_max_amount_30day_window"]).mean() > 0.1

    served = request_time_vectors(client, history.sample(SAMPLE // 2, random_state=5), EXTENDED)
    worst, where = max_abs_diff(batch, served, EXTENDED.names)
    assert worst <= 1e-9, f"prefix logs: max abs diff {worst} at {where}"
    worst, where, later = later_requests_diff(client, history, labels, 300, seed=3,
                                              feature_set=EXTENDED)
    assert len(later) >= 200
    assert worst <= 1e-9, f"later requests: max abs diff {worst} at {where}"

    expected = expected_entity_values(batch, history, EXTENDED)
    stored = RedisOnlineStore(redis_server.url, ttl_s=3600).read(EXTENDED, list(expected))
    for (entity, entity_id), entry in zip(expected, stored, strict=True):
        assert entry is not None, (entity, entity_id)
        for name, value in expected[(entity, entity_id)].items():
            assert abs(entry.values[name] - value) <= 1e-9, (entity, entity_id, name)


def test_the_faust_engine_computes_the_extended_set(
    tmp_path: Path, fresh_kafka_broker: Any, redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Faust engine runs the same worker (``kafka_engine.build_worker``), selected by the
    same variable: a small replay (Faust is ~3x slower than the kafka engine here) whose
    published vectors and prefix logs equal the batch engine."""
    write_dataset(simulate(SimulationConfig(n_customers=100, n_terminals=200, n_days=18,
                                            seed=29)), tmp_path)
    kafka = KafkaSettings(bootstrap_servers=fresh_kafka_broker.bootstrap_servers,
                          session_timeout_ms=6000)
    report = replay(tmp_path, ReplayOptions(limit=2_500, replication_factor=1,
                                            pending_labels=True), kafka)
    url = redis_server.url.rsplit("/", 1)[0] + "/5"
    client = redis.Redis.from_url(url)
    client.flushdb()
    monkeypatch.setenv("RTML_FEATURE_PIPELINE_FEATURE_SET", "extended")
    run = faust_engine.run(Settings(consumer_group="faust-extended", online_layout="prefix"),
                           kafka, RedisSettings(url=url), max_idle_s=2,
                           install_signal_handlers=False)
    assert run.events_applied == report.transactions + report.labels

    history, labels = history_frames(tmp_path, report.transactions)
    batch = batch_features(history, labels, EXTENDED)
    published = streamed_vectors(kafka.bootstrap_servers, run.vectors_published,
                                 feature_set=EXTENDED)
    assert len(published) == report.transactions
    worst, where = max_abs_diff(batch, published, EXTENDED.names)
    assert worst <= 1e-9, f"published vectors: max abs diff {worst} at {where}"
    minimum = published["customer_id_min_amount_30day_window"]  # not vacuous: a range
    assert (minimum < published["customer_id_max_amount_30day_window"]).mean() > 0.5
    worst, where, _ = later_requests_diff(client, history, labels, 50, seed=7,
                                          feature_set=EXTENDED)
    assert worst <= 1e-9, f"prefix logs: max abs diff {worst} at {where}"
    client.flushdb()
    client.close()
