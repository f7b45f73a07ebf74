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

The history frame has every field of the feature set's event schema the archive
holds (a payments set's device, IP address, merchant category, country and
channel beside the handbook's columns), under the schema's names; the labels
join by the schema's id field. For the handbook's schema it is the five columns
it always was. A required field missing from archived transactions (segments
written while the worker served another schema) fails the training with the
field named, rather than computing features over holes.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from rtml_common.handbook import TRANSACTION_SCHEMA
from rtml_common.schema import EventSchema, FieldType
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
    schema = feature_set.schema
    if archive.event_schema != schema:
        raise ValueError(f"the archive holds {archive.event_schema.name!r} events, feature set "
                         f"{feature_set.name!r} reads {schema.name!r} events")
    tx = archive.read(TRANSACTIONS, start, end)
    tx = tx.sort_values([schema.event_time, schema.id_field], kind="stable")
    tx = tx.reset_index(drop=True)
    labels = archive.read(LABELS, start, end)
    labels = labels[labels["labeled_at"] <= pd.Timestamp(as_of)]
    known = labels.set_index("transaction_id")
    joined = known.reindex(tx[schema.id_field])
    has_label = joined["labeled_at"].notna().to_numpy()
    is_fraud = pd.Series(np.where(has_label, joined["is_fraud"].fillna(False).astype(bool),
                                  False), name="is_fraud")
    history = history_frame(tx, schema)
    event_time = history[schema.event_time]
    labeled_at = pd.Series(joined["labeled_at"].to_numpy(), dtype="datetime64[us, UTC]")
    label_frame = pd.DataFrame({
        "transaction_id": history[schema.id_field],
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


def history_frame(tx: pd.DataFrame, schema: EventSchema) -> pd.DataFrame:
    """The batch engine's history from archived transactions: the schema's fields, typed.

    The handbook's schema gives the five columns training always read (``currency`` is
    not one, and an unknown terminal is its own group ``""`` rather than a missing key);
    any other schema gives every field (optional strings keep None: a missing key).
    """
    for declared in schema.fields:
        if declared.required and tx[declared.name].isna().any():
            missing = int(tx[declared.name].isna().sum())
            raise ValueError(f"{missing} archived transactions lack required field "
                             f"{declared.name!r} of schema {schema.name!r} (archived before "
                             "the worker served it?); retrain on a period archived with it")
    if schema == TRANSACTION_SCHEMA:
        return pd.DataFrame({
            "transaction_id": tx["transaction_id"].astype(str),
            "event_time": tx["event_time"].astype("datetime64[us, UTC]"),
            "customer_id": tx["customer_id"].astype(str),
            "terminal_id": tx["terminal_id"].fillna("").astype(str),
            "amount": tx["amount"].astype("float64"),
        })
    columns: dict[str, pd.Series] = {}
    for declared in schema.fields:
        values = tx[declared.name]
        if declared.type is FieldType.TIMESTAMP:
            columns[declared.name] = values.astype("datetime64[us, UTC]")
        elif declared.type is FieldType.NUMBER:
            columns[declared.name] = values.astype("float64")
        elif declared.type is FieldType.STRING:
            columns[declared.name] = values.astype(object).where(values.notna(), None)
        else:  # integers and booleans: as read (nullable where a value is absent)
            columns[declared.name] = values
    return pd.DataFrame(columns)
