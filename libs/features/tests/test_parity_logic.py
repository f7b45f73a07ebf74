"""The streaming computer and the batch engine agree on random histories.

Pure logic (no servers): random transactions with timestamp ties, labels
that arrive early, late or never, and transactions delivered out of order
within the allowed lateness. Every feature of every transaction must match
to 1e-9.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from rtml_features.baseline import BASELINE
from rtml_features.batch import compute_features
from rtml_features.definitions import Agg, Entity, FeatureSet, Ratio, RowFeature, RowKind
from rtml_features.definitions import WindowAggregate as W
from rtml_features.extended import EXTENDED
from rtml_features.stream import StreamingFeatureComputer

T0 = pd.Timestamp("2018-04-01", tz="UTC")
CUSTOMER = Entity("customer", "customer_id")
TERMINAL = Entity("terminal", "terminal_id")

#: Exercises every aggregation the engines support, short windows, and delays.
MIXED = FeatureSet("mixed", [
    RowFeature("amount", RowKind.FIELD, field="amount"),
    RowFeature("night", RowKind.NIGHT, night_end_hour=3),
    W("c_sum_2h", CUSTOMER, Agg.SUM, timedelta(hours=2), field="amount"),
    W("c_mean_1d", CUSTOMER, Agg.MEAN, timedelta(days=1), field="amount"),
    W("c_count_90s", CUSTOMER, Agg.COUNT, timedelta(seconds=90)),
    W("t_amount_delayed", TERMINAL, Agg.MEAN, timedelta(days=2), field="amount",
      label_delay=timedelta(hours=12)),
    W("c_min_6h", CUSTOMER, Agg.MIN, timedelta(hours=6), field="amount"),
    W("c_max_3d", CUSTOMER, Agg.MAX, timedelta(days=3), field="amount"),
    W("t_max_delayed", TERMINAL, Agg.MAX, timedelta(days=1), field="amount",
      label_delay=timedelta(hours=6)),
    # Labels with no delay: a fraud counts from the moment its label is known.
    W("c_known_frauds_2d", CUSTOMER, Agg.SUM, timedelta(days=2), field="is_fraud",
      label_delay=timedelta(0)),
    Ratio("t_fraud_rate", W("t_frauds", TERMINAL, Agg.SUM, timedelta(days=3), field="is_fraud",
                            label_delay=timedelta(days=1)),
          W("t_count", TERMINAL, Agg.COUNT, timedelta(days=3), label_delay=timedelta(days=1)),
          default=-1.0),
])


def random_history(seed: int, n: int = 3000, days: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, days * 86400, n))
    seconds[rng.random(n) < 0.05] //= 60 * 60  # force some exact-time ties ...
    seconds = np.sort(seconds)
    tx = pd.DataFrame({
        "transaction_id": rng.permutation(n).astype(str),  # ids not in time order
        "event_time": T0 + pd.to_timedelta(seconds, unit="s"),
        "customer_id": rng.integers(0, 25, n).astype(str),
        "terminal_id": rng.integers(0, 15, n).astype(str),
        "amount": rng.gamma(2.0, 30.0, n).round(2),
    })
    labelled = rng.random(n) < 0.8  # some transactions never get a label
    delay_s = rng.choice([0, 3600, 86400, 7 * 86400, 9 * 86400], size=n)
    labels = pd.DataFrame({
        "transaction_id": tx["transaction_id"],
        "labeled_at": tx["event_time"] + pd.to_timedelta(delay_s, unit="s"),
        "is_fraud": rng.random(n) < 0.2,
        "customer_id": tx["customer_id"], "terminal_id": tx["terminal_id"],
        "transaction_time": tx["event_time"],
    })[labelled]
    return tx, labels.reset_index(drop=True)


def stream(feature_set: FeatureSet, tx: pd.DataFrame, labels: pd.DataFrame,
           shuffle_within_s: int, seed: int) -> pd.DataFrame:
    """Feed events in arrival order: labels at their labeled_at, transactions jittered."""
    rng = np.random.default_rng(seed)
    ms = lambda s: (s.dt.tz_localize(None).astype("datetime64[ms]").astype("int64"))  # noqa: E731
    tx_ms = ms(tx["event_time"]).to_numpy()
    arrival = tx_ms + rng.integers(0, shuffle_within_s * 1000 + 1, len(tx))
    events = [(int(a), 1, i) for i, a in enumerate(arrival)]
    label_ms = ms(labels["labeled_at"]).to_numpy()
    # A label is delivered before any transaction stamped at its labeled_at (see docs).
    events += [(int(a) - 1 if shuffle_within_s else int(a), 0, i) for i, a in enumerate(label_ms)]
    events.sort()
    computer = StreamingFeatureComputer(feature_set,
                                        allowed_lateness=timedelta(seconds=shuffle_within_s))
    rows: dict[str, dict[str, float]] = {}
    label_tx_ms = ms(labels["transaction_time"]).to_numpy()
    for _, kind, i in events:
        if kind == 0:
            lab = labels.iloc[i]
            emitted = computer.on_label(lab.transaction_id, lab.customer_id, lab.terminal_id,
                                        int(label_tx_ms[i]), int(label_ms[i]), bool(lab.is_fraud))
        else:
            row = tx.iloc[i]
            emitted = computer.on_transaction(row.transaction_id, row.customer_id,
                                              row.terminal_id, int(tx_ms[i]), float(row.amount))
        rows.update((e.transaction_id, e.vector) for e in emitted)  # the last vector wins
        computer.evict()
    return pd.DataFrame.from_dict(rows, orient="index")


@pytest.mark.parametrize("feature_set", [MIXED, BASELINE, EXTENDED], ids=lambda fs: fs.name)
@pytest.mark.parametrize("seed", [1, 2])
def test_streaming_equals_batch(feature_set: FeatureSet, seed: int) -> None:
    tx, labels = random_history(seed)
    batch = compute_features(feature_set, tx, tx, labels).set_index("transaction_id")
    streamed = stream(feature_set, tx, labels, shuffle_within_s=0, seed=seed)
    diff = (batch[feature_set.names] - streamed.loc[batch.index, feature_set.names]).abs()
    assert diff.to_numpy().max() <= 1e-9, diff.max()


@pytest.mark.parametrize(("feature_set", "seed"), [(MIXED, 7), (MIXED, 8), (EXTENDED, 7)],
                         ids=["mixed-7", "mixed-8", "extended-7"])
def test_out_of_order_within_lateness_is_revised_to_match(feature_set: FeatureSet,
                                                          seed: int) -> None:
    tx, labels = random_history(seed)
    batch = compute_features(feature_set, tx, tx, labels).set_index("transaction_id")
    streamed = stream(feature_set, tx, labels, shuffle_within_s=1200, seed=seed)
    diff = (batch[feature_set.names] - streamed.loc[batch.index, feature_set.names]).abs()
    assert diff.to_numpy().max() <= 1e-9, diff.max()


def test_snapshot_restore_mid_stream_gives_identical_results() -> None:
    """A computer restored from a JSON round trip continues exactly like the original."""
    import orjson

    from rtml_features.stream import restore, snapshot

    tx, labels = random_history(11, n=1500)
    whole = stream(MIXED, tx, labels, shuffle_within_s=600, seed=11)

    first, second = tx.iloc[:700], tx.iloc[700:]
    cut = first["event_time"].max()
    early = labels[labels["labeled_at"] < cut]
    late = labels[labels["labeled_at"] >= cut]
    computer = StreamingFeatureComputer(MIXED, allowed_lateness=timedelta(seconds=600))
    for frame, labs in ((first, early),):
        _feed_in_order(computer, frame, labs)
    resumed = StreamingFeatureComputer(MIXED, allowed_lateness=timedelta(seconds=600))
    restore(resumed, orjson.loads(orjson.dumps(snapshot(computer))))
    assert snapshot(resumed) == snapshot(computer)
    # Both continue with the same remaining events and agree on every vector.
    out_a = _feed_in_order(computer, second, late)
    out_b = _feed_in_order(resumed, second, late)
    assert out_a == out_b
    assert set(out_a) <= set(whole.index)


def _feed_in_order(computer: StreamingFeatureComputer, tx: pd.DataFrame,
                   labels: pd.DataFrame) -> dict[str, dict[str, float]]:
    ms = lambda s: s.dt.tz_localize(None).astype("datetime64[ms]").astype("int64")  # noqa: E731
    events = [(int(t), 1, i) for i, t in enumerate(ms(tx["event_time"]))]
    events += [(int(t) - 1, 0, i) for i, t in enumerate(ms(labels["labeled_at"]))]
    label_tx = ms(labels["transaction_time"]).to_numpy()
    label_at = ms(labels["labeled_at"]).to_numpy()
    out: dict[str, dict[str, float]] = {}
    for _, kind, i in sorted(events):
        if kind == 0:
            lab = labels.iloc[i]
            emitted = computer.on_label(lab.transaction_id, lab.customer_id, lab.terminal_id,
                                        int(label_tx[i]), int(label_at[i]), bool(lab.is_fraud))
        else:
            row = tx.iloc[i]
            emitted = computer.on_transaction(row.transaction_id, row.customer_id,
                                              row.terminal_id,
                                              int(ms(tx["event_time"]).iloc[i]),
                                              float(row.amount))
        out.update((e.transaction_id, e.vector) for e in emitted)
    return out


def test_window_sums_stay_exact_beside_huge_entities() -> None:
    """Rounding of one entity's sums must not grow with other entities' totals."""
    n = 200_000
    rng = np.random.default_rng(3)
    times = T0 + pd.to_timedelta(np.sort(rng.integers(0, 30 * 86400, n)), unit="s")
    big = rng.random(n) < 0.5
    tx = pd.DataFrame({
        "transaction_id": np.arange(n).astype(str), "event_time": times,
        "customer_id": np.where(big, "whale", "small"), "terminal_id": "t",
        "amount": np.where(big, 1e9, 0.1),
    })
    fs = FeatureSet("precision", [W("sum_1d", CUSTOMER, Agg.SUM, timedelta(days=1),
                                    field="amount")])
    batch = compute_features(fs, tx, tx)
    small = batch[batch["customer_id"] == "small"]
    counts = compute_features(FeatureSet("c", [W("n_1d", CUSTOMER, Agg.COUNT,
                                                 timedelta(days=1))]), small, small)["n_1d"]
    # Every small amount is 0.1, so the exact sum is 0.1 x count (fsum-level accuracy).
    assert np.abs(small["sum_1d"].to_numpy() - 0.1 * counts.to_numpy()).max() <= 1e-9


def test_labels_read_behind_transactions_still_revise_the_newest_vectors() -> None:
    """A consumer catching up may read the labels topic far behind transactions.

    Once a label partition has delivered, it holds the watermark back, so the
    vectors its later labels must revise are not swept as "final" meanwhile.
    """
    day = 86_400_000
    computer = StreamingFeatureComputer(BASELINE, allowed_lateness=timedelta(seconds=300))
    computer.expect_sources(["transactions:0"])
    # The label partition delivers early: a label for an unrelated transaction.
    computer.on_label("x", "c9", "t9", 0, 7 * day, False, "labels:0")
    # Terminal t1: one transaction a day for 20 days, read before their labels.
    latest: dict[str, dict[str, float]] = {}
    for i in range(20):
        for emission in computer.on_transaction(f"tx{i}", "c1", "t1", i * day + 1000, 10.0,
                                                "transactions:0"):
            latest[emission.transaction_id] = emission.vector
    # Now the labels arrive (each known 7 days after its transaction): all fraud.
    for i in range(13):
        for emission in computer.on_label(f"tx{i}", "c1", "t1", i * day + 1000,
                                          i * day + 1000 + 7 * day, True, "labels:0"):
            latest[emission.transaction_id] = emission.vector
    newest = latest["tx19"]
    # At day 19 the delayed 30-day window (t-37d, t-7d] holds days 0..12, all labelled
    # fraud by day 19 (label i is known at day i + 7).
    assert newest["terminal_id_risk_30day_window"] == 1.0
    assert newest["terminal_id_nb_tx_30day_window"] == 13.0
