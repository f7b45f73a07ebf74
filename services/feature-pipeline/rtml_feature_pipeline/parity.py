"""Check streaming output against the batch engine: the parity guarantee, as a tool.

The streaming engines promise that the last vector published for each
transaction equals the batch engine's point-in-time value, that each
online-store entity hash holds the values at its newest transaction, and that
the prefix logs give, at any request time their trim allows, the batch
engine's vector of a request at that time (:func:`request_time_vectors`). These
helpers rebuild the batch side from a simulated data set and read the
streaming side back from Kafka, so the promise can be checked by tests,
benchmarks and people after a deployment.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import redis

from rtml_common.events import FeatureVector
from rtml_common.kafka.reader import iter_topic
from rtml_features.baseline import BASELINE
from rtml_features.batch import compute_features, to_epoch_ms
from rtml_features.definitions import FeatureSet
from rtml_features.online_store.base import entity_features
from rtml_features.online_store.redis.prefix_reader import PrefixLogReader
from rtml_features.request_vector import RequestVectors
from rtml_simulator.frames import load_dataset


def history_frames(data_dir: Path, n_transactions: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, labels) of the first ``n_transactions`` of a simulated data set.

    Ids become strings, as on the wire. Labels are known 7 days after their
    transaction, as the replay publishes them (see :mod:`rtml_simulator.frames`).
    """
    dataset = load_dataset(data_dir, limit=n_transactions, string_ids=True)
    return dataset.history, dataset.labels


def batch_features(history: pd.DataFrame, labels: pd.DataFrame,
                   feature_set: FeatureSet = BASELINE) -> pd.DataFrame:
    """Point-in-time features of every history row, indexed by transaction id."""
    return compute_features(feature_set, history, history, labels).set_index("transaction_id")


def streamed_vectors(bootstrap: str, expected: int | None = None,
                     idle_timeout_s: float = 5.0,
                     feature_set: FeatureSet | None = None) -> pd.DataFrame:
    """The last revision of every transaction's vector on the ``features`` topic.

    With ``feature_set``, only that set's vectors (name and version): pipelines of
    several sets publish to the same topic.
    """
    latest: dict[str, FeatureVector] = {}
    for record in iter_topic(bootstrap, "features", expected, idle_timeout_s=idle_timeout_s):
        vector = FeatureVector.model_validate_json(record.value() or b"")
        if feature_set is not None and (vector.feature_set, vector.feature_set_version) != (
                feature_set.name, feature_set.version):
            continue
        kept = latest.get(vector.transaction_id)
        if kept is None or vector.revision > kept.revision:
            latest[vector.transaction_id] = vector
    return pd.DataFrame.from_dict({tid: v.features for tid, v in latest.items()}, orient="index")


def request_time_vectors(client: redis.Redis, requests: pd.DataFrame,
                         feature_set: FeatureSet = BASELINE) -> pd.DataFrame:
    """Each request's vector at its own time, from the Redis prefix logs (one read each,
    as the decision API computes it), indexed by transaction id.

    ``requests``: transaction_id, event_time, customer_id, terminal_id (None: no
    terminal), amount. A request whose transaction the pipeline applied is counted
    once (the logs say they hold it); any other counts in its own windows. Raises
    :class:`~rtml_features.prefix_log.OutOfRange` for a time before a log's trim.
    """
    reader = PrefixLogReader(client, feature_set)
    vectors = RequestVectors(feature_set)
    keys = [entity.keys[0] for entity in feature_set.entities]
    rows: dict[str, dict[str, float]] = {}
    times = to_epoch_ms(requests["event_time"])
    for (_, request), time_ms in zip(requests.iterrows(), times, strict=True):
        tid = str(request["transaction_id"])
        ids = {key: (None if pd.isna(request[key]) else str(request[key])) for key in keys}
        logs = reader.read(tid, int(time_ms), ids)
        rows[tid] = vectors.compute(tid, int(time_ms), {"amount": float(request["amount"])},
                                    logs)
    return pd.DataFrame.from_dict(rows, orient="index")


def later_requests(history: pd.DataFrame, n: int, seed: int,
                   max_offset: timedelta = timedelta(days=10)) -> pd.DataFrame:
    """Up to ``n`` new transactions, each of a distinct customer and a distinct terminal
    (so in one batch computation no request is in another's window), at or after the
    history's last event: a tenth exactly at it, the others up to ``max_offset`` later."""
    pairs = (history.drop_duplicates("customer_id").drop_duplicates("terminal_id")
             .sample(frac=1.0, random_state=seed).head(n))
    rng = np.random.default_rng(seed)
    offsets_ms = rng.integers(0, int(max_offset.total_seconds() * 1000), len(pairs))
    offsets_ms[: len(pairs) // 10] = 0
    last = history["event_time"].max()
    return pd.DataFrame({
        "transaction_id": [f"request-{i}" for i in range(len(pairs))],
        "event_time": [last + timedelta(milliseconds=int(ms)) for ms in offsets_ms],
        "customer_id": pairs["customer_id"].to_numpy(),
        "terminal_id": pairs["terminal_id"].to_numpy(),
        "amount": rng.uniform(0.0, 500.0, len(pairs)).round(2),
    })


def later_requests_diff(client: redis.Redis, history: pd.DataFrame, labels: pd.DataFrame,
                        n: int, seed: int, feature_set: FeatureSet = BASELINE
                        ) -> tuple[float, Any, pd.DataFrame]:
    """:func:`later_requests` served from the prefix logs vs the batch engine's vectors of
    the same requests added to the history: (max abs diff, where, served vectors)."""
    requests = later_requests(history, n, seed)
    expected = compute_features(
        feature_set, requests,
        pd.concat([history, requests[history.columns]], ignore_index=True),
        labels).set_index("transaction_id")
    served = request_time_vectors(client, requests, feature_set)
    worst, where = max_abs_diff(expected, served, feature_set.names)
    return worst, where, served


def max_abs_diff(batch: pd.DataFrame, streamed: pd.DataFrame,
                 names: list[str]) -> tuple[float, Any]:
    """Largest |batch - streamed| over every transaction and feature, and where."""
    diff = (batch.loc[streamed.index, names] - streamed[names]).abs()
    worst = diff.stack().idxmax() if len(diff) else None
    return float(np.nanmax(diff.to_numpy())) if len(diff) else 0.0, worst


def redis_entity_state(client: redis.Redis) -> dict[str, Any]:
    """Every online-store key in a Redis database: a hash's fields, a prefix log's
    ``{member: score}`` (every member, so a stale or doubled one shows)."""
    state: dict[str, Any] = {}
    for key in client.scan_iter("rtml:fs:*"):
        if client.type(key) == b"zset":
            state[key.decode()] = dict(client.zrange(key, 0, -1, withscores=True))  # type: ignore[arg-type]
        else:
            state[key.decode()] = client.hgetall(key)
    return state


def expected_entity_values(batch: pd.DataFrame, history: pd.DataFrame,
                           feature_set: FeatureSet = BASELINE,
                           ) -> dict[tuple[str, str], dict[str, float]]:
    """Batch values of each entity's features at its newest transaction."""
    ordered = history.assign(_ms=history["event_time"].astype("datetime64[ms, UTC]"))
    expected: dict[tuple[str, str], dict[str, float]] = {}
    for entity in feature_set.entities:
        names = entity_features(feature_set, entity)
        newest = ordered.sort_values(["_ms", "transaction_id"]).groupby(entity.key).tail(1)
        for _, row in newest.iterrows():
            values = batch.loc[row["transaction_id"], names]
            expected[(entity.name, row[entity.key])] = {n: float(values[n]) for n in names}
    return expected
