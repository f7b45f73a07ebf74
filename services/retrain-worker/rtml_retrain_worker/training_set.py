"""The archive as the frames training expects (:class:`rtml_simulator.frames.Dataset`).

Point in time: the training set is what the platform knew at ``as_of`` (the
label clock the split was planned at). Transactions are read from the start
of the training period minus the feature set's longest horizon (window plus
label delay, so 30-day and label-delayed features are complete on the first
training day) up to the end of the test period; nothing later is read.
Labels keep their real ``labeled_at`` from the ``labels`` stream; a label
not known by ``as_of`` counts as "not fraud" for the target and is absent
for the features (the batch engine only uses labels known at each row's
time, so the features match what the streaming engine computed).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from rtml_features.definitions import FeatureSet
from rtml_retrain_worker.archive import LABELS, TRANSACTIONS, Archive
from rtml_simulator.frames import Dataset
from rtml_training.split import SplitConfig

#: ``labeled_at`` of a transaction whose label is not known at ``as_of``: never.
NEVER = pd.Timestamp("2200-01-01", tz="UTC")


def history_start(split: SplitConfig, feature_set: FeatureSet) -> datetime:
    """First event time the training set reads: the training start minus the longest horizon."""
    horizon = max((a.horizon for a in feature_set.window_aggregates), default=timedelta(0))
    return datetime.combine(split.train_start, time(0), tzinfo=UTC) - horizon


def build_dataset(archive: Archive, split: SplitConfig, feature_set: FeatureSet,
                  as_of: datetime, validation_folds: int = 0) -> Dataset:
    """The frames of ``split``'s history as known at ``as_of`` (see the module doc), reaching
    back far enough for ``validation_folds`` validation folds (model selection and
    calibration; the archive may hold fewer, which training copes with)."""
    earliest = split.validation().fold(validation_folds - 1) if validation_folds else split
    start = history_start(earliest, feature_set)
    end = datetime.combine(split.test_end, time(0), tzinfo=UTC)
    tx = archive.read(TRANSACTIONS, start, end)
    tx = tx.sort_values(["event_time", "transaction_id"], kind="stable").reset_index(drop=True)
    labels = archive.read(LABELS, start, end)
    labels = labels[labels["labeled_at"] <= pd.Timestamp(as_of)]
    known = labels.set_index("transaction_id")
    joined = known.reindex(tx["transaction_id"])
    has_label = joined["labeled_at"].notna().to_numpy()
    is_fraud = pd.Series(np.where(has_label, joined["is_fraud"].fillna(False).astype(bool),
                                  False), name="is_fraud")
    event_time = tx["event_time"].astype("datetime64[us, UTC]")
    history = pd.DataFrame({
        "transaction_id": tx["transaction_id"].astype(str),
        "event_time": event_time,
        "customer_id": tx["customer_id"].astype(str),
        # An unknown terminal is its own group ("") rather than a missing key.
        "terminal_id": tx["terminal_id"].fillna("").astype(str),
        "amount": tx["amount"].astype("float64"),
    })
    labeled_at = pd.Series(joined["labeled_at"].to_numpy(), dtype="datetime64[us, UTC]")
    label_frame = pd.DataFrame({
        "transaction_id": history["transaction_id"],
        "labeled_at": labeled_at.where(has_label, NEVER),
        "is_fraud": is_fraud,
    })
    scenario = joined["fraud_scenario"].fillna(0).to_numpy(dtype=np.int64)
    return Dataset(
        path=Path(archive.root),
        history=history,
        labels=label_frame,
        is_fraud=is_fraud,
        scenario=pd.Series(np.where(has_label, scenario, 0).astype("int8"), name="scenario"),
        day=event_time.dt.floor("D").rename("day"),
    )
