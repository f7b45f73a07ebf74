"""The archive and the training set under the served feature set's own schema (issue #20).

A rich simulation is replayed as the payments example's events (into a recording sink,
decoded by the schema's lean decoder as the worker's consumer does), archived, and read
back: every field intact, and the training set's history gives ``compute_features`` of
the payments set what the simulator's own frames give it. Segments written under the
handbook's schema still read. ``test_worker_schema_kafka.py`` does it through a broker.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rtml_common.events import Transaction
from rtml_common.handbook import TRANSACTION_SCHEMA
from rtml_common.kafka.producer import FailedDelivery
from rtml_common.schema import EventSchema
from rtml_common.schema_models import lean_decoder
from rtml_features.batch import compute_features
from rtml_features.definitions import FeatureSet
from rtml_features.repo import load_repo
from rtml_retrain_worker.archive import (
    LABELS,
    SCHEMAS,
    TRANSACTIONS,
    Archive,
    ArchivedRecord,
    transactions_schema,
)
from rtml_retrain_worker.training_set import build_dataset, history_frame
from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_simulator.config import RichMode
from rtml_simulator.frames import load_dataset
from rtml_simulator.replay import ReplayOptions, replay
from rtml_training.split import SplitConfig

PAYMENTS_REPO = Path(__file__).resolve().parents[3] / "examples" / "feature_repos" / "payments"
CONFIG = SimulationConfig(n_customers=120, n_terminals=240, n_days=16, radius=10.0, seed=2,
                          rich=RichMode(takeovers_per_day=3))
RICH = ["device_id", "ip_address", "merchant_category", "country", "channel"]


def payments() -> FeatureSet:
    return load_repo(PAYMENTS_REPO).feature_sets["payments"]


class Recorder:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, list[tuple[str, bytes | None]]]] = []

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None,
                 headers: Sequence[tuple[str, bytes | None]] | None = None) -> None:
        self.records.append((topic, value, list(headers or [])))

    def failures(self) -> list[FailedDelivery]:
        return []

    def flush(self, timeout_s: float | None = None) -> None:
        return None


def archived(records: Recorder, schema: EventSchema) -> list[ArchivedRecord]:
    """The replayed records decoded as the worker's consumer decodes them."""
    from rtml_common.events import Label
    from rtml_common.serde import decode

    payment = lean_decoder(schema)
    out = []
    for offset, (topic, value, headers) in enumerate(records.records):
        event = (payment(value, headers) if topic == schema.topic
                 else decode(value, Label, headers))
        out.append(ArchivedRecord(topic, 0, offset, event))
    return out


def plain(values: pd.Series) -> list[object]:
    """Values with every missing one as None (pandas may say NaN after a reindex)."""
    return [None if pd.isna(v) else v for v in values.tolist()]


@pytest.fixture(scope="module")
def rich_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(simulate(CONFIG), tmp_path_factory.mktemp("archive-rich"))


@pytest.fixture(scope="module")
def rich_archive(rich_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Archive:
    schema = payments().schema
    sink = Recorder()
    replay(rich_dir, ReplayOptions(schema=schema, pending_labels=True), producer=sink)
    archive = Archive(tmp_path_factory.mktemp("archive"), max_events=5_000,
                      event_schema=schema)
    records = archived(sink, schema)
    for start in range(0, len(records), 2_000):  # as consumer batches: a segment per 5,000+
        archive.add(records[start:start + 2_000])
    archive.flush()
    return archive


def test_handbook_segments_keep_their_columns() -> None:
    assert transactions_schema(TRANSACTION_SCHEMA) == SCHEMAS[TRANSACTIONS]


def test_payment_events_round_trip_with_every_field(rich_archive: Archive,
                                                    rich_dir: Path) -> None:
    schema = payments().schema
    assert len(rich_archive.segments) > 2  # several segments of each kind
    reopened = Archive(rich_archive.root, event_schema=schema)
    frame = reopened.read(TRANSACTIONS)
    assert list(frame.columns) == schema.names
    truth = load_dataset(rich_dir, string_ids=True).history
    assert len(frame) == len(truth)
    frame = frame.set_index("transaction_id").loc[truth["transaction_id"]]
    for name in RICH:
        assert plain(frame[name]) == plain(truth[name]), name
    assert frame["amount"].tolist() == truth["amount"].tolist()
    assert (frame["currency"] == "EUR").all()
    assert frame["ip_address"].isna().any() and frame["ip_address"].notna().any()
    assert reopened.read(LABELS)["transaction_id"].nunique() == len(truth)


def test_history_from_the_archive_gives_the_payments_features(rich_archive: Archive,
                                                               rich_dir: Path) -> None:
    feature_set = payments()
    history = history_frame(rich_archive.read(TRANSACTIONS), feature_set.schema)
    history = history.sort_values(["event_time", "transaction_id"], kind="stable")
    truth = load_dataset(rich_dir, string_ids=True)
    labels = rich_archive.read(LABELS)[["transaction_id", "labeled_at", "is_fraud"]]
    ours = compute_features(feature_set, history, history, labels)
    expected = compute_features(feature_set, truth.history, truth.history, truth.labels)
    ours = ours.set_index("transaction_id").loc[expected["transaction_id"]]
    for name in feature_set.names:
        np.testing.assert_allclose(ours[name].to_numpy(), expected[name].to_numpy(),
                                   rtol=1e-9, atol=1e-9, err_msg=name)


def test_build_dataset_carries_the_schema_fields(rich_archive: Archive) -> None:
    feature_set = payments()
    split = SplitConfig(train_start=date(2018, 4, 3), train_days=3, delay_days=1, test_days=2)
    dataset = build_dataset(rich_archive, split, feature_set,
                            as_of=datetime(2018, 5, 1, tzinfo=UTC))
    assert set(RICH) <= set(dataset.history.columns)
    assert len(dataset) and dataset.history["device_id"].notna().all()
    assert dataset.is_fraud.any()
    features = compute_features(feature_set, dataset.history, dataset.history, dataset.labels)
    assert features["card_distinct_devices_1day"].max() >= 1


def test_old_segments_read_with_the_new_columns_as_nulls(tmp_path: Path) -> None:
    t0 = datetime(2018, 4, 2, tzinfo=UTC)
    old = Archive(tmp_path)
    old.add([ArchivedRecord("transactions", 0, i, Transaction(
        transaction_id=str(i), event_time=t0 + timedelta(hours=i), customer_id="c1",
        terminal_id="t1", amount=5.0)) for i in range(3)])
    old.flush()
    feature_set = payments()
    archive = Archive(tmp_path, event_schema=feature_set.schema)
    frame = archive.read(TRANSACTIONS)
    assert frame["transaction_id"].tolist() == ["0", "1", "2"]
    assert frame["device_id"].isna().all() and frame["channel"].isna().all()
    assert Archive(tmp_path).read(TRANSACTIONS).columns.tolist() == TRANSACTION_SCHEMA.names
    with pytest.raises(ValueError, match="3 archived transactions lack required field "
                                         "'device_id' of schema 'payment'"):
        history_frame(frame, feature_set.schema)
    split = SplitConfig(train_start=date(2018, 4, 2), train_days=1, delay_days=0, test_days=1)
    with pytest.raises(ValueError, match="the archive holds 'transaction' events"):
        build_dataset(Archive(tmp_path), split, feature_set, as_of=t0)


def test_handbook_history_is_unchanged(tmp_path: Path) -> None:
    t0 = datetime(2018, 4, 2, tzinfo=UTC)
    archive = Archive(tmp_path)
    archive.add([ArchivedRecord("transactions", 0, 0, Transaction(
        transaction_id="1", event_time=t0, customer_id="c1", amount=2.0))])
    archive.flush()
    history = history_frame(archive.read(TRANSACTIONS), TRANSACTION_SCHEMA)
    assert history.columns.tolist() == ["transaction_id", "event_time", "customer_id",
                                        "terminal_id", "amount"]
    assert history["terminal_id"].tolist() == [""]
    assert str(history["event_time"].dtype) == "datetime64[us, UTC]"
    assert history["amount"].tolist() == [2.0]
