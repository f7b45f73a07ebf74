"""Harness for online/offline consistency runs: decisions sent, read back, lag-classified.

Shared by the end-to-end consistency test (``tests/test_online_offline_consistency.py``)
and the benchmark that proves the fix in numbers (``bench/online_offline.py``): a
data set's transactions sent one by one to ``POST /v1/decisions`` (a customer's
requests strictly one after another, a few in flight), the labels published as
they become known, every decision read back from ``decisions``, and each
decision classified *current* or *raced the pipeline* from its consistency
markers (``rtml_seen_events_<e>`` / ``rtml_seen_labels_<e>``) against the
data set's true counts — the lag classes of the consistency monitor's README.
The test also reads back ``features`` and ``predictions`` and compares each
decision with the scorer's vector and score of the same transaction
(:func:`scorer_agreement`).

The imports of the feature and decision packages are those two callers' own
dependencies; nothing here is imported by the local stack itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import redis

from rtml_common.config import KafkaSettings
from rtml_common.events import Label
from rtml_common.kafka.producer import EventProducer
from rtml_common.kafka.published import read_published
from rtml_features.definitions import Agg, FeatureSet, WindowAggregate
from rtml_features.online_store.redis.prefix_reader import PrefixLogReader
from rtml_features.request_vector import SEEN_EVENTS_MARKER, SEEN_LABELS_MARKER
from rtml_features.rows import epoch_ms


def marker_set(feature_set: FeatureSet) -> FeatureSet:
    """The markers' true values from the batch engine: per entity, the event count and the
    label sum (labels known by ``t``) over ``(t - H, t]``, the request itself included."""
    features = []
    for entity in feature_set.entities:
        horizon = feature_set.horizon(entity)
        features.append(WindowAggregate(f"events_{entity.name}", entity, Agg.COUNT, horizon))
        features.append(WindowAggregate(f"labels_{entity.name}", entity, Agg.SUM, horizon,
                                        field="is_fraud", label_delay=timedelta(0)))
    return FeatureSet("markers", features)


def history_applied(client: redis.Redis, feature_set: FeatureSet, rows: pd.DataFrame) -> bool:
    """Whether the online prefix logs hold every transaction of ``rows`` for every entity.

    ``rows`` has the batch engine's history columns (``transaction_id``,
    ``event_time``, ``customer_id``, ``terminal_id``).
    """
    from rtml_decision.request_store import with_marker_windows

    reader = PrefixLogReader(client, feature_set)
    reader.plans = [with_marker_windows(plan) for plan in reader.plans]  # every log asks has()
    for row in rows.itertuples():
        t = epoch_ms(row.event_time)
        views = reader.read(row.transaction_id, t, {"customer_id": row.customer_id,
                                                    "terminal_id": row.terminal_id})
        for events, _ in views.values():
            if events is None or not events.has(row.transaction_id, t):
                return False
    return True


def label_events(history: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The labels of ``history``'s transactions as :class:`Label` fields, by ``labeled_at``."""
    frame = labels.merge(history[["transaction_id", "event_time", "customer_id",
                                  "terminal_id"]], on="transaction_id")
    frame = frame.rename(columns={"event_time": "transaction_time"})
    return frame.sort_values(["labeled_at", "transaction_id"]).reset_index(drop=True)


async def send_decisions(port: int, requests: pd.DataFrame, labels: pd.DataFrame,
                         producer: EventProducer, in_flight: int,
                         labels_ahead: timedelta = timedelta(0)) -> list[dict[str, Any]]:
    """POST every row of ``requests`` (event-time order) to the decision API; the answers.

    At most ``in_flight`` requests are outstanding and a customer's requests go
    strictly one after the other (a customer's decisions depend on each other).
    Before each request, the labels of ``labels`` (see :func:`label_events`) known by
    its event time plus ``labels_ahead`` are published to ``labels``: ``0`` is what
    a live label feed does; more puts labels known *after* a request in the store,
    which the request must leave out. A non-200 answer raises.
    """
    answers: list[dict[str, Any]] = []
    busy: dict[str, asyncio.Event] = {}
    slots = asyncio.Semaphore(in_flight)
    label_rows = labels.itertuples()
    pending_label = next(label_rows, None)
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:

        async def one(body: dict[str, Any], done: asyncio.Event) -> None:
            try:
                for attempt in range(5):  # a dropped keep-alive connection: retry the id
                    try:               # (idempotent: a retry gets the stored decision)
                        response = await http.post("/v1/decisions", json=body)
                        break
                    except httpx.TransportError:
                        if attempt == 4:
                            raise
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:300]}")
                else:
                    answers.append(response.json())
            finally:
                done.set()
                slots.release()

        tasks = []
        for row in requests.itertuples():
            if failures:
                break
            while pending_label is not None and \
                    pending_label.labeled_at <= row.event_time + labels_ahead:
                producer.send(Label(
                    transaction_id=pending_label.transaction_id,
                    customer_id=pending_label.customer_id,
                    terminal_id=pending_label.terminal_id,
                    transaction_time=pending_label.transaction_time.to_pydatetime(),
                    labeled_at=pending_label.labeled_at.to_pydatetime(),
                    is_fraud=bool(pending_label.is_fraud)))
                pending_label = next(label_rows, None)
            previous = busy.get(row.customer_id)
            if previous is not None:
                await previous.wait()
            await slots.acquire()
            done = busy[row.customer_id] = asyncio.Event()
            body = {"transaction_id": row.transaction_id,
                    "event_time": row.event_time.isoformat(),
                    "customer_id": row.customer_id, "terminal_id": row.terminal_id,
                    "amount": row.amount}
            tasks.append(asyncio.create_task(one(body, done)))
        await asyncio.gather(*tasks)
    producer.flush()
    if failures:
        raise RuntimeError(f"{len(failures)} decision requests failed, first: {failures[0]}")
    return answers


def read_decisions(kafka: KafkaSettings, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The ``decisions`` topic's Decision values of the transactions ``ids``, by id."""
    return {tid: values[-1] for tid, values in read_values(kafka, "decisions", ids).items()}


def read_values(kafka: KafkaSettings, topic: str, ids: Iterable[str]
                ) -> dict[str, list[dict[str, Any]]]:
    """Every JSON value of ``topic`` naming one of the transactions ``ids``, by id.

    A transaction's records share a key, hence a partition: its list is in topic
    order (``features``: revision 0 first; ``predictions``: one per model version,
    more would be duplicates).
    """
    wanted = set(ids)
    found: dict[str, list[dict[str, Any]]] = {}
    for message in read_published(kafka, [topic], {}):
        value = orjson.loads(message.value() or b"null")
        if value and value.get("transaction_id") in wanted:
            found.setdefault(value["transaction_id"], []).append(value)
    return found


@dataclass(frozen=True)
class LagClasses:
    """Per decision (spine order): its lag class over all its entities (README "Lag classes").

    ``current``: every entity's markers equal the true counts — the online state
    held every earlier event and label, so any feature difference is a real
    inconsistency. ``unexplained``: some marker is *higher* than the truth.
    ``unknown``: a marker is absent or not a number (a degraded decision keeps only
    row features). The rest raced the pipeline (``behind``).
    """

    current: np.ndarray
    unexplained: np.ndarray
    unknown: np.ndarray
    #: entity name -> decisions whose own entity was behind.
    behind_by_entity: dict[str, int]

    @property
    def behind(self) -> np.ndarray:
        return ~self.current & ~self.unexplained & ~self.unknown


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column as floats, NaN where absent or not a number."""
    if column not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def lag_classes(feature_set: FeatureSet, served: pd.DataFrame, truth: pd.DataFrame,
                own_labels: np.ndarray | None = None) -> LagClasses:
    """Classify each decision from its ``served`` inputs and the batch engine's ``truth``
    (:func:`marker_set` over the spine). The request itself is excluded from the
    truth's counts (one event; its own label when ``own_labels`` says it was known by
    ``t``). An entity whose logs carry no label field records 0 labels: its truth is 0.
    """
    from rtml_features.request_vector import log_spec

    n = len(served)
    current = np.ones(n, dtype=bool)
    unexplained = np.zeros(n, dtype=bool)
    unknown = np.zeros(n, dtype=bool)
    behind: dict[str, int] = {}
    for entity in feature_set.entities:
        events = truth[f"events_{entity.name}"].to_numpy() - 1
        if log_spec(feature_set, entity).label_fields:
            labels = truth[f"labels_{entity.name}"].to_numpy() - (
                own_labels if own_labels is not None else 0)
        else:
            labels = np.zeros(n)
        seen_events = _numbers(served, SEEN_EVENTS_MARKER + entity.name)
        seen_labels = _numbers(served, SEEN_LABELS_MARKER + entity.name)
        unknown |= ~np.isfinite(seen_events) | ~np.isfinite(seen_labels)
        equal = (seen_events == events) & (seen_labels == labels)
        current &= equal
        unexplained |= (seen_events > events) | (seen_labels > labels)
        behind[entity.name] = int((~equal & (seen_events <= events)
                                   & (seen_labels <= labels)).sum())
    current &= ~unknown
    unexplained &= ~unknown
    return LagClasses(current, unexplained, unknown, behind)


@dataclass(frozen=True)
class ScorerAgreement:
    """Per decision (spine order): the scorer's view of the same transaction.

    The scorer scores a transaction's first ``features`` vector (revision 0,
    computed by the streaming engine when the decided transaction reaches the
    pipeline) and never a revision (``services/scorer/README.md``), so that
    vector and its prediction are what a decision is compared with.
    """

    #: The transaction has a champion prediction of the decision's model version.
    predicted: np.ndarray
    #: Max abs diff over the features between the decision's ``inputs`` and the
    #: scorer's vector (revision 0); NaN without a vector.
    vector_diff: np.ndarray
    #: The two vectors are equal as float32, the precision the model reads them in
    #: (False without a vector).
    same_model_inputs: np.ndarray
    #: ``|decision score - prediction score|``; NaN without a prediction.
    score_diff: np.ndarray
    #: The pipeline published revisions of the transaction's vector.
    revised: np.ndarray
    #: Predictions beyond the first per (transaction, model version).
    duplicates: int
    #: Predictions of another model version than the decision's.
    other_versions: int


def scorer_agreement(names: Sequence[str], ids: Sequence[str],
                     decisions: dict[str, dict[str, Any]],
                     vectors: dict[str, list[dict[str, Any]]],
                     predictions: dict[str, list[dict[str, Any]]]) -> ScorerAgreement:
    """Compare each decision of ``ids`` with the scorer's vector and prediction of it.

    ``decisions`` from :func:`read_decisions`; ``vectors`` and ``predictions``
    from :func:`read_values` on ``features`` and ``predictions``.
    """
    n = len(ids)
    predicted = np.zeros(n, dtype=bool)
    vector_diff = np.full(n, np.nan)
    same_inputs = np.zeros(n, dtype=bool)
    score_diff = np.full(n, np.nan)
    revised = np.zeros(n, dtype=bool)
    duplicates = other_versions = 0
    for i, tid in enumerate(ids):
        decision = decisions[tid]
        first = [v for v in vectors.get(tid, []) if v.get("revision", 0) == 0]
        revised[i] = any(v.get("revision", 0) > 0 for v in vectors.get(tid, []))
        if first:
            served = np.array([float(decision["inputs"][name]) for name in names])
            streamed = np.array([float(first[0]["features"][name]) for name in names])
            vector_diff[i] = float(np.abs(served - streamed).max())
            same_inputs[i] = bool(np.array_equal(served.astype(np.float32),
                                                 streamed.astype(np.float32)))
        mine = [p for p in predictions.get(tid, [])
                if p["model_version"] == decision["model_version"]]
        other_versions += len(predictions.get(tid, [])) - len(mine)
        duplicates += max(0, len(mine) - 1)
        if mine and decision["score"] is not None:
            predicted[i] = True
            score_diff[i] = abs(float(decision["score"]) - float(mine[0]["score"]))
    return ScorerAgreement(predicted, vector_diff, same_inputs, score_diff, revised,
                           duplicates, other_versions)
