"""Holding the generic path to the batch engine: rich payments in, the batch's vectors out.

For the tests of a non-classic feature set served end to end (``tests/test_generic_*.py``)
and benchmarks: a small rich simulation (:class:`rtml_simulator.RichMode`) as events of
the payments example's schema (``event_model(PAYMENT)``) and the handbook's labels, a
production schedule with out-of-order and late records, its production to the broker, and
the batch engine's vectors (:func:`rtml_features.batch.compute_features`) for the same
events and labels, to compare the ``features`` topic and the online store with.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from rtml_common.config import KafkaSettings
from rtml_common.events import Label
from rtml_common.kafka.admin import ensure_topics
from rtml_common.kafka.producer import EventProducer
from rtml_common.schema_models import event_model
from rtml_common.serde import dumps, headers_for
from rtml_features.batch import compute_features
from rtml_features.definitions import FeatureSet
from rtml_features.online_store.base import entity_features
from rtml_features.repo import load_repo

#: The payments example feature repo of this checkout.
PAYMENTS_REPO = Path(__file__).resolve().parents[3] / "examples" / "feature_repos" / "payments"

TOPICS = ["transactions", "labels", "features", "transactions.late", "transactions.dlq",
          "labels.dlq"]


def payments_set() -> FeatureSet:
    """The example repo's ``payments`` feature set (loaded as the services load a repo)."""
    return load_repo(PAYMENTS_REPO).feature_sets["payments"]


@dataclass
class RichData:
    """A rich simulation as the engines read it: events (string ids), labels."""

    history: pd.DataFrame
    labels: pd.DataFrame

    def events(self) -> list[dict[str, Any]]:
        """Every payment as the schema's fields (absent optional fields left out)."""
        rows = self.history.to_dict("records")
        events = [{k: v for k, v in row.items() if v is not None and v == v} for row in rows]
        for event in events:
            event["event_time"] = event["event_time"].to_pydatetime()
        return events


def rich_data(n_customers: int = 150, n_terminals: int = 300, n_days: int = 10,
              seed: int = 5) -> RichData:
    """A small rich simulation with string ids (the payment schema's)."""
    from rtml_simulator import RichMode, SimulationConfig, simulate
    from rtml_simulator.frames import frames_from_table
    from rtml_simulator.io import transactions_table

    config = SimulationConfig(rich=RichMode(), seed=seed, n_customers=n_customers,
                              n_terminals=n_terminals, n_days=n_days)
    dataset = frames_from_table(transactions_table(simulate(config)))
    history = dataset.history.copy()
    for column in ("transaction_id", "customer_id", "terminal_id"):
        history[column] = history[column].astype(str)
    history["event_time"] = history["event_time"].astype("datetime64[ms, UTC]")
    labels = dataset.labels.copy()
    labels["transaction_id"] = labels["transaction_id"].astype(str)
    labels["labeled_at"] = labels["labeled_at"].astype("datetime64[ms, UTC]")
    return RichData(history, labels)


@dataclass(frozen=True)
class Scheduled:
    """One record to produce, in production order."""

    at: datetime
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def schedule(feature_set: FeatureSet, data: RichData, out_of_order_fraction: float = 0.05,
             max_delay: timedelta = timedelta(minutes=4), seed: int = 3,
             extra: Iterable[Scheduled] = ()) -> list[Scheduled]:
    """Payments and labels in production order: each at its event time (a label at its
    ``labeled_at``), a fraction of the payments and of the labels held back by up to
    ``max_delay`` (keep it within the allowed lateness: nothing late, revisions forced)."""
    rng = random.Random(seed)
    model = event_model(feature_set.schema)
    payment_headers = list(headers_for(model))
    label_headers = list(headers_for(Label))
    records: list[Scheduled] = []
    by_id: dict[str, dict[str, Any]] = {}
    for fields in data.events():
        event = model(**fields)
        by_id[fields["transaction_id"]] = fields
        at = fields["event_time"]
        if rng.random() < out_of_order_fraction:
            at += max_delay * rng.random()
        records.append(Scheduled(at, "transactions", str(fields["customer_id"]).encode(),
                                 dumps(event.model_dump()), payment_headers))
    for row in data.labels.itertuples(index=False):
        payment = by_id[row.transaction_id]
        labeled_at = row.labeled_at.to_pydatetime()
        label = Label(transaction_id=row.transaction_id, customer_id=payment["customer_id"],
                      terminal_id=payment.get("terminal_id"),
                      transaction_time=payment["event_time"],
                      labeled_at=labeled_at, is_fraud=bool(row.is_fraud))
        at = labeled_at
        if rng.random() < out_of_order_fraction:
            at += max_delay * rng.random()
        records.append(Scheduled(at, "labels", payment["customer_id"].encode(),
                                 dumps(label.model_dump()), label_headers))
    records += extra
    records.sort(key=lambda r: r.at)
    records += warm_up_labels(records[0].at, records[-1].at, label_headers)
    records.sort(key=lambda r: r.at)
    return records


#: Keys of the warm-up labels at each step: enough that every ``labels`` partition gets one.
WARM_UP_KEYS = 20
WARM_UP_EVERY = timedelta(hours=6)


def warm_up_labels(start: datetime, end: datetime,
                   headers: list[tuple[str, bytes]]) -> list[Scheduled]:
    """Genuine labels of transactions that never come, every 6 hours of event time from
    the stream's start, keyed so that every ``labels`` partition delivers from the start
    on and keeps moving, as in a running system.

    A labels partition joins the watermark once it has delivered; one whose first
    label comes days into the stream (the simulation's labels start 7 days in) may
    find the transactions read ahead of it by more than the lateness, and its first
    labels then cannot revise the vectors they reach (the README's limit). Every 6
    hours, not once: a partition jumping days ahead in event time is quarantined."""
    records = []
    at, step = start, 0
    while at <= end:
        for i in range(WARM_UP_KEYS):
            tid = f"warm-up-{step}-{i}"
            records.append(Scheduled(at, "labels", tid.encode(), dumps(Label(
                transaction_id=tid, customer_id=tid, transaction_time=at, labeled_at=at,
                is_fraud=False).model_dump()), headers))
        at, step = at + WARM_UP_EVERY, step + 1
    return records


def produce(kafka: KafkaSettings, records: Iterable[Scheduled], rate: float | None = None
            ) -> int:
    """Create the topics (one broker) and produce ``records`` in order, at ``rate`` records
    a second if given (else as fast as possible); how many."""
    ensure_topics(kafka.bootstrap_servers, TOPICS, replication_factor=1)
    sent = 0
    started = time.monotonic()
    with EventProducer(kafka) as producer:
        for record in records:
            producer.send_raw(record.topic, record.key, record.value, record.headers)
            sent += 1
            if rate is not None and sent % 50 == 0:
                producer.flush()
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush()
    return sent


def batch_vectors(feature_set: FeatureSet, data: RichData) -> pd.DataFrame:
    """The batch engine's vector of every payment, indexed by transaction id."""
    result = compute_features(feature_set, data.history, data.history, data.labels)
    features = result.iloc[:, -len(feature_set.names):]
    features.index = data.history["transaction_id"].to_numpy()
    return features


def expected_latest(feature_set: FeatureSet, data: RichData, batch: pd.DataFrame
                    ) -> dict[tuple[str, str], dict[str, float]]:
    """(entity, id) -> the batch values of the entity's features at its newest event
    (ties broken by transaction id, as the streaming computers order events)."""
    ordered = data.history.assign(_tid=data.history["transaction_id"]).sort_values(
        ["event_time", "_tid"])
    expected: dict[tuple[str, str], dict[str, float]] = {}
    records = ordered.to_dict("records")
    for entity in feature_set.entities:
        names = entity_features(feature_set, entity)
        if not names:
            continue
        for row in records:
            entity_id = entity.id_of({k: v for k, v in row.items() if v == v})
            if entity_id is not None:
                values = batch.loc[row["transaction_id"]]
                expected[(entity.name, entity_id)] = {n: float(values[n]) for n in names}
    return expected
