"""The join, its state and the window figures, on made-up records (no servers).

AUC / AP are cross-checked against scikit-learn directly, PSI against
rtml_monitoring on champion-quantile bins, so the auditor's figures are the
project's definitions on exactly the rows the docstrings promise.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from rtml_common.events import Label, Prediction, ShadowScore
from rtml_common.kafka.consumer import Record
from rtml_monitoring.divergence import psi
from rtml_monitoring.reference import describe
from rtml_shadow_auditor.audit import CHAMPION_MISMATCH, evaluate_state
from rtml_shadow_auditor.join import (
    LABELS_TOPIC,
    OTHER_MODEL,
    PREDICTIONS_TOPIC,
    SHADOW_SCORES_TOPIC,
    Joiner,
)
from rtml_shadow_auditor.store import LABEL_WATERMARK, Store, to_us

MODEL = "fraud-detector"
T0 = datetime(2018, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def prediction(i: int, score: float, at: datetime, version: str = "1",
               latency: float = 1.0, model: str = MODEL) -> Prediction:
    return Prediction(transaction_id=f"tx-{i}", customer_id=f"c{i % 50}", event_time=at,
                      model_name=model, model_version=version, score=score, latency_ms=latency,
                      scored_at=at)


def shadow(i: int, score: float, at: datetime, version: str = "2", latency: float = 2.0,
           champion: str | None = "1") -> ShadowScore:
    return ShadowScore(transaction_id=f"tx-{i}", customer_id=f"c{i % 50}", event_time=at,
                       model_name=MODEL, model_version=version, score=score, latency_ms=latency,
                       scored_at=at, champion_version=champion)


def label(i: int, fraud: bool, at: datetime, delay: timedelta = 7 * DAY) -> Label:
    return Label(transaction_id=f"tx-{i}", customer_id=f"c{i % 50}", transaction_time=at,
                 labeled_at=at + delay, is_fraud=fraud)


class Feed:
    """Records with increasing offsets per topic, as the consumer loop hands them over."""

    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}

    def records(self, events: list[Any]) -> list[Record[Any]]:
        out = []
        for event in events:
            topic = {Prediction: PREDICTIONS_TOPIC, ShadowScore: SHADOW_SCORES_TOPIC,
                     Label: LABELS_TOPIC}[type(event)]
            offset = self.offsets.get(topic, 0)
            self.offsets[topic] = offset + 1
            out.append(Record(topic, 0, offset, None, event, (), 0))
        return out


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state.sqlite")


def evaluate(store: Store, window: timedelta = 7 * DAY, label_window: timedelta = 28 * DAY,
             threshold: float = 0.5) -> Any:
    return evaluate_state(store, MODEL, T0, window_s=window.total_seconds(),
                          label_window_s=label_window.total_seconds(), threshold=threshold)


def scenario(n: int = 400, seed: int = 1) -> tuple[list[Any], dict[str, np.ndarray]]:
    """n transactions over 20 days: champion + shadow scores, labels a week later."""
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < 0.2
    champion = np.clip(0.3 * fraud + rng.normal(0.35, 0.2, n), 0, 1)
    shadow_scores = np.clip(0.5 * fraud + rng.normal(0.3, 0.2, n), 0, 1)
    times = [T0 + timedelta(hours=float(h)) for h in np.sort(rng.uniform(0, 20 * 24, n))]
    events: list[Any] = []
    for i in range(n):
        events += [prediction(i, float(champion[i]), times[i], latency=float(1 + i % 7)),
                   shadow(i, float(shadow_scores[i]), times[i], latency=float(2 + i % 11))]
    events += [label(i, bool(fraud[i]), times[i]) for i in range(n)]
    events.sort(key=lambda e: e.labeled_at if isinstance(e, Label) else e.event_time)
    return events, {"fraud": fraud, "champion": champion, "shadow": shadow_scores,
                    "time": np.array([to_us(t) for t in times])}


def test_order_and_duplicates_do_not_change_the_state(tmp_path: Path) -> None:
    events, _ = scenario(120)
    in_order, shuffled = Store(tmp_path / "a.sqlite"), Store(tmp_path / "b.sqlite")
    Joiner(in_order, MODEL).handle(Feed().records(events))
    rng = np.random.default_rng(3)
    mixed = [events[i] for i in rng.permutation(len(events))]
    feed, joiner = Feed(), Joiner(shuffled, MODEL)
    # Labels before their scores, and every record delivered twice (at-least-once).
    for chunk in np.array_split(np.arange(len(mixed)), 7):
        records = feed.records([mixed[i] for i in chunk])
        joiner.handle(records)
        joiner.handle(records)
    assert in_order.counts() == shuffled.counts() == {"scores": 240, "labels": 120}
    a, b = evaluate(in_order), evaluate(shuffled)
    assert a.to_dict()["shadows"] == b.to_dict()["shadows"]
    assert a.shadows[0].matured_labels == 120


def test_a_corrected_label_replaces_the_old_one_but_a_replay_does_not(store: Store) -> None:
    feed, joiner = Feed(), Joiner(store, MODEL)
    joiner.handle(feed.records([label(1, False, T0, 7 * DAY)]))
    joiner.handle(feed.records([label(1, True, T0, 9 * DAY), label(1, False, T0, 7 * DAY)]))
    assert store.query("SELECT is_fraud FROM labels") == [(1,)]


def test_records_of_other_models_are_counted_not_joined(store: Store) -> None:
    Joiner(store, MODEL).handle(Feed().records([prediction(1, 0.5, T0, model="other"),
                                                prediction(2, 0.5, T0)]))
    assert store.counts()["scores"] == 1
    assert store.counters()[OTHER_MODEL] == 1


def test_the_stored_offsets_are_where_the_batches_end(store: Store) -> None:
    feed, joiner = Feed(), Joiner(store, MODEL)
    joiner.handle(feed.records([prediction(i, 0.1, T0) for i in range(5)]))
    joiner.handle(feed.records([label(1, True, T0)]))
    assert store.offsets() == {(PREDICTIONS_TOPIC, 0): 5, (LABELS_TOPIC, 0): 1}
    joiner.on_batch_consumed({(PREDICTIONS_TOPIC, 0): 3})  # never backwards
    assert store.offset(PREDICTIONS_TOPIC, 0) == 5
    joiner.on_batch_consumed({(PREDICTIONS_TOPIC, 0): 9})  # dead letters past the last record
    assert store.offset(PREDICTIONS_TOPIC, 0) == 9


def test_metrics_are_sklearns_on_the_paired_matured_rows(store: Store) -> None:
    events, truth = scenario(400)
    # Only transactions labelled so far count: hold back the last 60 labels.
    labels = [e for e in events if isinstance(e, Label)]
    held = {e.transaction_id for e in sorted(labels, key=lambda e: e.labeled_at)[-60:]}
    kept = [e for e in events if not (isinstance(e, Label) and e.transaction_id in held)]
    # The shadow skips 40 transactions (sampling): the champion is judged without them too.
    skipped = {f"tx-{i}" for i in range(0, 400, 10)}
    kept = [e for e in kept if not (isinstance(e, ShadowScore) and e.transaction_id in skipped)]
    Joiner(store, MODEL).handle(Feed().records(kept))
    evaluation = evaluate(store, label_window=60 * DAY)
    audit = evaluation.shadows[0]
    ids = np.array([f"tx-{i}" for i in range(400)])
    judged = ~np.isin(ids, list(held)) & ~np.isin(ids, list(skipped))
    y = truth["fraud"][judged]
    assert audit.matured_labels == int(judged.sum()) == 400 - 60 - len(skipped - held)
    assert audit.frauds == int(y.sum())
    assert audit.metrics is not None and audit.champion_metrics is not None
    assert audit.metrics.ap == pytest.approx(average_precision_score(y, truth["shadow"][judged]))
    assert audit.metrics.auc == pytest.approx(roc_auc_score(y, truth["shadow"][judged]))
    assert audit.champion_metrics.ap == pytest.approx(
        average_precision_score(y, truth["champion"][judged]))
    # The champion's own entry uses all its matured rows, skipped-by-shadow ones included.
    own = ~np.isin(ids, list(held))
    assert evaluation.champion.metrics.ap == pytest.approx(
        average_precision_score(truth["fraud"][own], truth["champion"][own]))
    assert 0 <= audit.metrics.cp_at_k <= 1
    assert store.watermark_us(LABEL_WATERMARK) == max(
        to_us(e.labeled_at) for e in kept if isinstance(e, Label))


def test_recent_window_figures(store: Store) -> None:
    events, truth = scenario(400)
    Joiner(store, MODEL).handle(Feed().records(events))
    audit = evaluate(store, window=5 * DAY, threshold=0.4).shadows[0]
    end = truth["time"].max()
    recent = truth["time"] >= end - int(5 * DAY.total_seconds() * 1e6)
    latencies = np.array([2 + i % 11 for i in range(400)], dtype=float)[recent]
    assert audit.scored == audit.paired == int(recent.sum())
    assert audit.latency_p50_ms == pytest.approx(np.percentile(latencies, 50))
    assert audit.latency_p99_ms == pytest.approx(np.percentile(latencies, 99))
    champion, mine = truth["champion"][recent], truth["shadow"][recent]
    bins = describe(champion, 10)
    assert audit.psi == pytest.approx(psi(bins.counts, bins.histogram(mine)))
    assert audit.agreement == pytest.approx(np.mean((mine >= 0.4) == (champion >= 0.4)))
    assert audit.errors == {CHAMPION_MISMATCH: 0}


def test_label_metrics_use_only_the_label_window(store: Store) -> None:
    events, truth = scenario(400)
    Joiner(store, MODEL).handle(Feed().records(events))
    audit = evaluate(store, window=3 * DAY, label_window=10 * DAY).shadows[0]
    inside = truth["time"] >= truth["time"].max() - int(10 * DAY.total_seconds() * 1e6)
    assert audit.matured_labels == int(inside.sum())
    assert audit.metrics is not None
    assert audit.metrics.ap == pytest.approx(
        average_precision_score(truth["fraud"][inside], truth["shadow"][inside]))


def test_errors_missing_rows_and_the_current_champion(store: Store) -> None:
    joiner, feed = Joiner(store, MODEL), Feed()
    joiner.handle(feed.records(
        [prediction(i, 0.2, T0 + i * timedelta(minutes=1)) for i in range(10)]
        + [shadow(i, 0.3, T0 + i * timedelta(minutes=1)) for i in range(6)]
        # The shadow says it ran beside champion v0, but v1 scored these.
        + [shadow(i, 0.3, T0 + i * timedelta(minutes=1), version="3", champion="0")
           for i in range(4)]))
    evaluation = evaluate(store)
    by_version = {a.model_version: a for a in evaluation.shadows}
    assert by_version["2"].missing == 4 and by_version["2"].error_count == 0
    assert by_version["3"].errors == {CHAMPION_MISMATCH: 4}
    # A newer champion version takes over: shadows are compared with it only.
    joiner.handle(feed.records([prediction(100, 0.5, T0 + DAY, version="5"),
                                shadow(100, 0.5, T0 + DAY)]))
    evaluation = evaluate(store)
    assert evaluation.champion is not None and evaluation.champion.model_version == "5"
    assert {a.model_version: a.paired for a in evaluation.shadows} == {"2": 1, "3": 0}


def test_pruning_keeps_the_state_bounded(store: Store) -> None:
    joiner, feed = Joiner(store, MODEL), Feed()
    joiner.handle(feed.records([prediction(i, 0.1, T0 + i * DAY) for i in range(40)]
                               + [label(i, False, T0 + i * DAY) for i in range(40)]))
    assert store.prune(horizon_s=10 * DAY.total_seconds(), max_rows=1_000_000) == 29
    assert store.counts() == {"scores": 11, "labels": 11}
    assert store.prune(horizon_s=10 * DAY.total_seconds(), max_rows=4) == 7
    assert store.counts() == {"scores": 4, "labels": 4}
    oldest = min(r[0] for r in store.query("SELECT event_time_us FROM scores"))
    assert oldest == to_us(T0 + 36 * DAY)
