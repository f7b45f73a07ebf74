"""The worker serving the payments example's feature set, against a real broker (issue #20).

A small rich simulation is replayed (``rtml replay``'s code) as payment events to a
broker of this test's own; the worker, configured with ``feature_set="payments"``
(``RTML_FEATURE_REPO`` names the example repo), consumes and archives them, and its
archive holds every payment with its device, IP address, merchant category, country
and channel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from rtml_common.config import KafkaSettings, MlflowSettings
from rtml_features.repo import FEATURE_REPO_ENV, load_repo
from rtml_localstack.testing import TEST_SESSION_TIMEOUT_MS, KafkaBroker
from rtml_retrain_worker import service
from rtml_retrain_worker.archive import LABELS, TRANSACTIONS, Archive
from rtml_retrain_worker.config import Settings
from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_simulator.config import RichMode
from rtml_simulator.frames import load_dataset
from rtml_simulator.replay import ReplayOptions, replay

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_environment")]

PAYMENTS_REPO = Path(__file__).resolve().parents[3] / "examples" / "feature_repos" / "payments"
CONFIG = SimulationConfig(n_customers=100, n_terminals=200, n_days=8, radius=10.0, seed=6,
                          rich=RichMode())
RICH = ["device_id", "ip_address", "merchant_category", "country", "channel"]


def plain(values: pd.Series) -> list[object]:
    return [None if pd.isna(v) else v for v in values.tolist()]


def test_worker_archives_payment_events_with_their_fields(
        kafka_broker_factory: Callable[..., KafkaBroker], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FEATURE_REPO_ENV, str(PAYMENTS_REPO))
    broker = kafka_broker_factory(create_topics=True)
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                          session_timeout_ms=TEST_SESSION_TIMEOUT_MS, idempotent_producer=False,
                          commit_interval_s=0.2)
    data = write_dataset(simulate(CONFIG), tmp_path / "data")
    schema = load_repo(PAYMENTS_REPO).schemas["payment"]
    report = replay(data, ReplayOptions(schema=schema, create_topics=False,
                                        pending_labels=True), settings=kafka)
    assert report.transactions > 1_000

    settings = Settings(model_name="payments-model", consumer_group="g-payments",
                        archive_dir=tmp_path / "archive", feature_set="payments",
                        check_interval_s=0.5, segment_max_events=1_000, segment_max_age_s=1)
    result: list[service.WorkerRun] = []
    thread = threading.Thread(target=lambda: result.append(service.run(
        settings, kafka, MlflowSettings(), max_idle_s=4, install_signal_handlers=False)),
        daemon=True)
    thread.start()
    thread.join(120)
    assert result, "the worker did not finish"
    assert result[0].segments > 2 and result[0].trainings == []

    archive = Archive(settings.archive_dir, event_schema=schema)
    frame = archive.read(TRANSACTIONS)
    assert list(frame.columns) == schema.names
    truth = load_dataset(data, string_ids=True).history
    assert len(frame) == len(truth) == report.transactions
    frame = frame.set_index("transaction_id").loc[truth["transaction_id"]]
    for name in RICH:
        assert plain(frame[name]) == plain(truth[name]), name
    assert frame["customer_id"].tolist() == truth["customer_id"].tolist()
    assert len(archive.read(LABELS)) == report.labels
