"""The generic streaming computer against the reference: the last vector per event is the oracle's.

Randomized event sets of a schema with optional fields are fed event at a time,
out of order within the allowed lateness, from two partitions, with labels read
from their own partition (late, before their event, twice), redeliveries and
simultaneous events; the last vector emitted for each event must equal
:func:`rtml_features.oracle.oracle_features` over the same events and labels to
1e-9. Feature sets: one using every aggregation and row kind, compound entities,
LIFETIME windows (folded once evicted) and label-delayed aggregates; the
payments example's set; and the handbook's BASELINE, whose emissions must be
those of the classic :class:`~rtml_features.stream.StreamingFeatureComputer`.
The batch engine (:func:`rtml_features.batch.compute_features`) gives the same vectors
on larger streams than the oracle can take.
"""

from __future__ import annotations

import doctest
import importlib
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from rtml_common.schema import EventSchema, Field, FieldType
from rtml_features.baseline import BASELINE
from rtml_features.batch import compute_features
from rtml_features.definitions import (
    LIFETIME,
    Agg,
    Entity,
    FeatureSet,
    Ratio,
    RowFeature,
    RowKind,
    WindowAggregate,
    one_hot,
)
from rtml_features.generic_snapshot import restore, snapshot
from rtml_features.oracle import oracle_features
from rtml_features.repo import load_repo
from rtml_features.stream import Emission, LateEvent, StreamingFeatureComputer
from rtml_features.stream_generic import (
    DuplicateEventId,
    GenericStreamingComputer,
    InvalidEvent,
)

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
#: 2018-04-01T00:00Z: the scenarios' times are milliseconds after it.
ORIGIN_MS = 1_522_540_800_000
CHANNELS = ("pos", "web", "app")
PAYMENTS_REPO = Path(__file__).resolve().parents[3] / "examples" / "feature_repos" / "payments"

TXN = EventSchema(
    name="txn", topic="txns", id_field="transaction_id", event_time="event_time",
    partition_key="customer_id",
    fields=[
        Field("transaction_id", FieldType.STRING),
        Field("event_time", FieldType.TIMESTAMP),
        Field("customer_id", FieldType.STRING),
        Field("terminal_id", FieldType.STRING, required=False),
        Field("device_id", FieldType.STRING, required=False),
        Field("country", FieldType.STRING),
        Field("channel", FieldType.STRING, required=False, categories=CHANNELS),
        Field("amount", FieldType.NUMBER, minimum=0),
        Field("quantity", FieldType.INTEGER, required=False, default=1),
        Field("card_present", FieldType.BOOLEAN, required=False, default=False),
    ],
)

CUSTOMER = Entity("customer", key="customer_id")
TERMINAL = Entity("terminal", key="terminal_id")
DEVICE = Entity("device", key="device_id")
CARD_DEVICE = Entity("card_device", key=("customer_id", "device_id"))
CARD_COUNTRY = Entity("card_country", key=("customer_id", "country"))
LABEL_DELAY = 20 * MINUTE


def _every_kind() -> FeatureSet:
    """Every row kind and aggregation, bounded and LIFETIME, plain and compound, labels."""
    w = WindowAggregate
    terminal_count = w("term_n_1h_d", TERMINAL, Agg.COUNT, HOUR, label_delay=LABEL_DELAY)
    terminal_frauds = w("term_fraud_1h_d", TERMINAL, Agg.SUM, HOUR, field="is_fraud",
                        label_delay=LABEL_DELAY)
    return FeatureSet("every_kind", [
        RowFeature("amount", RowKind.FIELD, field="amount"),
        RowFeature("quantity", RowKind.FIELD, field="quantity"),
        RowFeature("card_present", RowKind.FIELD, field="card_present"),
        RowFeature("weekend", RowKind.WEEKEND),
        RowFeature("night", RowKind.NIGHT, night_end_hour=3),
        RowFeature("hour", RowKind.HOUR_OF_DAY),
        RowFeature("weekday", RowKind.DAY_OF_WEEK),
        RowFeature("channel_code", RowKind.CATEGORY_CODE, field="channel"),
        *one_hot("channel", "channel", CHANNELS),
        # customer: every aggregation over bounded windows ...
        w("cust_n_30m", CUSTOMER, Agg.COUNT, 30 * MINUTE),
        w("cust_sum_30m", CUSTOMER, Agg.SUM, 30 * MINUTE, field="amount"),
        w("cust_mean_1h", CUSTOMER, Agg.MEAN, HOUR, field="amount"),
        w("cust_min_1h", CUSTOMER, Agg.MIN, HOUR, field="amount", empty=-1.0),
        w("cust_max_1h", CUSTOMER, Agg.MAX, HOUR, field="amount"),
        w("cust_std_2h", CUSTOMER, Agg.STDDEV, 2 * HOUR, field="amount"),
        w("cust_devices_1h", CUSTOMER, Agg.COUNT_DISTINCT, HOUR, field="device_id"),
        w("cust_quantities_1h", CUSTOMER, Agg.COUNT_DISTINCT, HOUR, field="quantity",
          empty=-2.0),
        w("cust_last_1h", CUSTOMER, Agg.LAST, HOUR, field="amount", empty=-1.0),
        w("cust_gap_1h", CUSTOMER, Agg.TIME_SINCE_PREVIOUS, HOUR, empty=-1.0),
        w("cust_first_1h", CUSTOMER, Agg.TIME_SINCE_FIRST, HOUR),
        w("cust_present_30m", CUSTOMER, Agg.MEAN, 30 * MINUTE, field="card_present"),
        # ... and over its lifetime (folded once evicted)
        w("cust_n_life", CUSTOMER, Agg.COUNT, LIFETIME),
        w("cust_age_life", CUSTOMER, Agg.TIME_SINCE_FIRST, LIFETIME),
        w("cust_countries_life", CUSTOMER, Agg.COUNT_DISTINCT, LIFETIME, field="country"),
        w("cust_quantity_life", CUSTOMER, Agg.SUM, LIFETIME, field="quantity"),
        w("cust_std_life", CUSTOMER, Agg.STDDEV, LIFETIME, field="amount"),
        w("cust_min_life", CUSTOMER, Agg.MIN, LIFETIME, field="amount"),
        w("cust_max_life", CUSTOMER, Agg.MAX, LIFETIME, field="amount"),
        w("cust_mean_life", CUSTOMER, Agg.MEAN, LIFETIME, field="amount"),
        w("cust_last_life", CUSTOMER, Agg.LAST, LIFETIME, field="amount", empty=-3.0),
        w("cust_gap_life", CUSTOMER, Agg.TIME_SINCE_PREVIOUS, LIFETIME, empty=-5.0),
        w("cust_frauds_life", CUSTOMER, Agg.SUM, LIFETIME, field="is_fraud",
          label_delay=timedelta(0)),
        # terminal (an optional key): label-delayed windows, a ratio, a lifetime fraud rate
        terminal_count, terminal_frauds,
        Ratio("term_risk_1h_d", terminal_frauds, terminal_count, default=-1.0),
        w("term_customers_1h_d", TERMINAL, Agg.COUNT_DISTINCT, HOUR, field="customer_id",
          label_delay=LABEL_DELAY),
        w("term_max_30m_d", TERMINAL, Agg.MAX, 30 * MINUTE, field="amount",
          label_delay=LABEL_DELAY),
        w("term_frauds_30m", TERMINAL, Agg.SUM, 30 * MINUTE, field="is_fraud",
          label_delay=timedelta(0)),
        w("term_rate_life_d", TERMINAL, Agg.MEAN, LIFETIME, field="is_fraud",
          label_delay=10 * MINUTE),
        w("term_n_life_d", TERMINAL, Agg.COUNT, LIFETIME, label_delay=10 * MINUTE),
        # device (optional) and compound entities
        w("dev_n_10m", DEVICE, Agg.COUNT, 10 * MINUTE),
        w("dev_cards_30m", DEVICE, Agg.COUNT_DISTINCT, 30 * MINUTE, field="customer_id"),
        w("card_dev_age", CARD_DEVICE, Agg.TIME_SINCE_FIRST, LIFETIME),
        w("card_dev_n_1h", CARD_DEVICE, Agg.COUNT, HOUR),
        w("card_dev_mean_life", CARD_DEVICE, Agg.MEAN, LIFETIME, field="amount"),
        w("card_country_age", CARD_COUNTRY, Agg.TIME_SINCE_FIRST, LIFETIME),
        w("card_country_last_1h", CARD_COUNTRY, Agg.LAST, HOUR, field="amount"),
    ], schema=TXN)


EVERY_KIND = _every_kind()


def _payments() -> FeatureSet:
    return load_repo(PAYMENTS_REPO).feature_sets["payments"]


# -- scenarios -----------------------------------------------------------------------


@dataclass
class Scenario:
    """Events and labels, and the order a stream delivers them in."""

    events: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    #: ("event", event, source) / ("label", label, source), in delivery order.
    deliveries: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    lateness: timedelta = 10 * MINUTE


def _txn_event(rnd: random.Random, i: int, time_ms: int) -> dict[str, Any]:
    event: dict[str, Any] = {
        "transaction_id": f"t{i:04d}", "event_time": time_ms,
        "customer_id": f"c{rnd.randrange(6)}", "country": rnd.choice(["FR", "DE", "PT"]),
        "amount": round(rnd.uniform(0, 300), 2),
    }
    if rnd.random() < 0.8:
        event["terminal_id"] = f"m{rnd.randrange(5)}"
    if rnd.random() < 0.75:
        event["device_id"] = f"d{rnd.randrange(6)}"
    if rnd.random() < 0.8:
        event["channel"] = rnd.choice(CHANNELS)
    if rnd.random() < 0.6:
        event["quantity"] = rnd.randrange(1, 4)
    if rnd.random() < 0.5:
        event["card_present"] = rnd.random() < 0.5
    return event


def _payment_event(rnd: random.Random, i: int, time_ms: int) -> dict[str, Any]:
    event: dict[str, Any] = {
        "transaction_id": f"p{i:04d}", "event_time": time_ms,
        "customer_id": f"c{rnd.randrange(5)}", "device_id": f"d{rnd.randrange(5)}",
        "amount": round(rnd.uniform(0, 500), 2),
        "merchant_category": rnd.choice(["grocery", "fuel", "travel", "gaming"]),
        "country": rnd.choice(["FR", "DE"]), "channel": rnd.choice(["pos", "web", "app"]),
    }
    if rnd.random() < 0.85:
        event["terminal_id"] = f"m{rnd.randrange(4)}"
    if rnd.random() < 0.6:
        event["ip_address"] = f"10.0.0.{rnd.randrange(4)}"
    return event


def scenario(seed: int, make: Any, n: int, span: timedelta, lateness: timedelta,
             label_lag: timedelta, grid: timedelta) -> Scenario:
    """``n`` events over ``span`` (times on ``grid``, some repeated exactly), labels for
    some within ``label_lag``, some twice; delivered out of order within ``lateness``
    from two partitions plus a label partition, a few events redelivered."""
    rnd = random.Random(seed)
    span_ms, grid_ms = span // timedelta(milliseconds=1), grid // timedelta(milliseconds=1)
    lateness_ms, lag_minutes = lateness // timedelta(milliseconds=1), label_lag // MINUTE
    times: list[int] = []
    for _ in range(n):
        if times and rnd.random() < 0.1:
            times.append(rnd.choice(times))  # simultaneous with an earlier event
        else:
            times.append(ORIGIN_MS + rnd.randrange(span_ms // grid_ms) * grid_ms
                         + (rnd.randrange(1000) if rnd.random() < 0.3 else 0))
    events = [make(rnd, i, time_ms) for i, time_ms in enumerate(times)]
    labels: list[dict[str, Any]] = []
    for event in events:
        if rnd.random() < 0.45:
            at = event["event_time"] + rnd.randrange(lag_minutes + 1) * 60_000
            labels.append({"transaction_id": event["transaction_id"], "labeled_at": at,
                           "is_fraud": rnd.random() < 0.35})
            if rnd.random() < 0.15:  # labelled twice: the earliest labeled_at wins
                again = event["event_time"] + rnd.randrange(lag_minutes + 1) * 60_000 + 7
                labels.append({"transaction_id": event["transaction_id"], "labeled_at": again,
                               "is_fraud": rnd.random() < 0.5})
    keyed: list[tuple[float, int, tuple[str, dict[str, Any], str]]] = []
    for event in events:
        source = "p0" if int(event["customer_id"][1:]) % 2 else "p1"
        key = event["event_time"] + rnd.uniform(0, lateness_ms)
        keyed.append((key, len(keyed), ("event", event, source)))
        if rnd.random() < 0.1:  # redelivered, still within the lateness
            again = rnd.uniform(key, event["event_time"] + lateness_ms)
            keyed.append((again, len(keyed), ("event", dict(event), source)))
    for label in labels:
        key = label["labeled_at"] + rnd.uniform(0, lateness_ms)
        keyed.append((key, len(keyed), ("label", label, "labels")))
    keyed.sort(key=lambda item: (item[0], item[1]))
    deliveries = [item for _, _, item in keyed]
    # The oracle's tie rule for two labels at one labeled_at: the first read wins.
    delivered_labels = [item for kind, item, _ in deliveries if kind == "label"]
    return Scenario(events, delivered_labels, deliveries, lateness)


def run(computer: GenericStreamingComputer, scene: Scenario) -> dict[str, Emission]:
    """Feed the scenario; the last emission per event (redeliveries checked on the way)."""
    last: dict[str, Emission] = {}
    for kind, item, source in scene.deliveries:
        if kind == "event":
            tid = item["transaction_id"]
            redelivered = tid in last
            emitted = computer.on_event(item, source=source)
            if redelivered:
                assert emitted == [last[tid]], f"redelivered {tid} changed something"
            else:
                assert emitted[0].transaction_id == tid and emitted[0].revision == 0
        else:
            emitted = computer.on_label(item["transaction_id"], item["labeled_at"],
                                        item["is_fraud"], source=source)
        for emission in emitted:
            previous = last.get(emission.transaction_id)
            if previous is not None and emission is not previous:
                assert emission.revision == previous.revision + 1
                assert emission.vector != previous.vector
            last[emission.transaction_id] = emission
    return last


def assert_matches_oracle(feature_set: FeatureSet, scene: Scenario,
                          last: dict[str, Emission]) -> None:
    expected = oracle_features(feature_set, scene.events, scene.labels)
    assert len(last) == len(scene.events)
    mismatches = []
    for event, vector in zip(scene.events, expected, strict=True):
        got = last[event["transaction_id"]].vector
        assert list(got) == feature_set.names
        for name in feature_set.names:
            if got[name] != pytest.approx(vector[name], rel=1e-9, abs=1e-9):
                mismatches.append((event["transaction_id"], name, got[name], vector[name]))
    assert not mismatches, f"{len(mismatches)} values differ, e.g. {mismatches[:5]}"


# -- the reference ------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "label_lag"), [(1, 100 * MINUTE), (2, 100 * MINUTE),
                                                (3, 4 * HOUR)])
def test_every_kind_streamed_out_of_order_equals_the_oracle(seed: int,
                                                           label_lag: timedelta) -> None:
    """Labels up to 4 h late: most reach lifetime windows that folded their event."""
    scene = scenario(seed, _txn_event, n=220, span=8 * HOUR, lateness=10 * MINUTE,
                     label_lag=label_lag, grid=timedelta(seconds=30))
    computer = GenericStreamingComputer(EVERY_KIND, allowed_lateness=scene.lateness,
                                        sweep_every=HOUR)
    last = run(computer, scene)
    assert_matches_oracle(EVERY_KIND, scene, last)
    # The scenario did exercise revisions, eviction and lifetime folding.
    assert computer.revisions > 0
    memberships = sum(entity.id_of(event) is not None
                      for event in scene.events for entity in EVERY_KIND.entities)
    assert len(computer) < memberships / 2
    folded = [s.folded.count for s in computer.states.values() if s.folded is not None]
    assert sum(folded) > 0


@pytest.mark.parametrize("seed", range(100, 108))
def test_small_streams_of_every_kind_under_varied_settings_equal_the_oracle(seed: int) -> None:
    """Short streams, each with its own lateness, label lag, time grain (a second to ten
    minutes: few or many simultaneous events), sweep period and label horizon."""
    rnd = random.Random(seed)
    lateness = rnd.choice([timedelta(0), MINUTE, 10 * MINUTE, 45 * MINUTE])
    scene = scenario(seed, _txn_event, n=70, span=rnd.choice([HOUR, 6 * HOUR]),
                     lateness=lateness, label_lag=rnd.choice([MINUTE, HOUR, 4 * HOUR]),
                     grid=rnd.choice([timedelta(seconds=1), MINUTE, 10 * MINUTE]))
    computer = GenericStreamingComputer(EVERY_KIND, allowed_lateness=lateness,
                                        sweep_every=rnd.choice([MINUTE, HOUR]),
                                        label_horizon=rnd.choice([None, 5 * HOUR]))
    assert_matches_oracle(EVERY_KIND, scene, run(computer, scene))


def test_every_kind_without_lateness_in_time_order_equals_the_oracle() -> None:
    scene = scenario(4, _txn_event, n=150, span=6 * HOUR, lateness=timedelta(0),
                     label_lag=60 * MINUTE, grid=timedelta(minutes=1))
    computer = GenericStreamingComputer(EVERY_KIND, allowed_lateness=timedelta(0),
                                        sweep_every=30 * MINUTE)
    assert_matches_oracle(EVERY_KIND, scene, run(computer, scene))


@pytest.mark.parametrize("seed", [5, 6])
def test_the_payments_example_streamed_equals_the_oracle(seed: int) -> None:
    payments = _payments()
    scene = scenario(seed, _payment_event, n=180, span=12 * DAY, lateness=6 * HOUR,
                     label_lag=9 * DAY, grid=timedelta(minutes=5))
    computer = GenericStreamingComputer(payments, allowed_lateness=scene.lateness)
    last = run(computer, scene)
    assert_matches_oracle(payments, scene, last)
    assert computer.revisions > 0


# -- the batch engine -----------------------------------------------------------------


def batch_vectors(feature_set: FeatureSet, scene: Scenario) -> list[dict[str, float]]:
    """:func:`rtml_features.batch.compute_features` over the scenario, every event a row."""
    schema = feature_set.schema
    frame = pd.DataFrame([{name: event.get(name) for name in schema.names}
                          for event in scene.events])
    frame[schema.event_time] = pd.to_datetime(frame[schema.event_time], unit="ms", utc=True)
    labels = pd.DataFrame(scene.labels)
    labels["labeled_at"] = pd.to_datetime(labels["labeled_at"], unit="ms", utc=True)
    result = compute_features(feature_set, frame, frame, labels)
    features = result.iloc[:, -len(feature_set.names):]  # a feature may share a field's name
    assert list(features.columns) == feature_set.names
    return [dict(zip(feature_set.names, map(float, row), strict=True))
            for row in features.itertuples(index=False)]


@pytest.mark.parametrize(("make_set", "make_event", "span", "lateness", "label_lag"), [
    (lambda: EVERY_KIND, _txn_event, 8 * HOUR, 10 * MINUTE, 4 * HOUR),
    (_payments, _payment_event, 12 * DAY, 6 * HOUR, 9 * DAY),
], ids=["every_kind", "payments"])
def test_streamed_vectors_equal_the_batch_engines(make_set: Any, make_event: Any,
                                                  span: timedelta, lateness: timedelta,
                                                  label_lag: timedelta) -> None:
    feature_set = make_set()
    scene = scenario(8, make_event, n=300, span=span, lateness=lateness, label_lag=label_lag,
                     grid=timedelta(seconds=30))
    last = run(GenericStreamingComputer(feature_set, allowed_lateness=lateness), scene)
    mismatches = []
    for event, expected in zip(scene.events, batch_vectors(feature_set, scene), strict=True):
        got = last[event["transaction_id"]].vector
        mismatches += [(event["transaction_id"], name, got[name], expected[name])
                       for name in feature_set.names
                       if got[name] != pytest.approx(expected[name], rel=1e-9, abs=1e-9)]
    assert not mismatches, f"{len(mismatches)} values differ, e.g. {mismatches[:5]}"


# -- the classic computer ----------------------------------------------------------


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_baseline_gives_the_classic_computers_emissions(seed: int) -> None:
    """On a handbook sequence (late events, late labels, a label first, a redelivery)
    both computers emit the same vectors and revisions, in the same order."""
    rnd = random.Random(seed)
    lateness = DAY
    classic = StreamingFeatureComputer(BASELINE, allowed_lateness=lateness)
    generic = GenericStreamingComputer(BASELINE, allowed_lateness=lateness)
    keyed: list[tuple[float, int, tuple[Any, ...]]] = []
    for i in range(120):
        time_ms = ORIGIN_MS + rnd.randrange(20 * 24) * 3_600_000
        tid = f"h{i:03d}"
        customer = f"c{rnd.randrange(3)}"
        terminal = f"m{rnd.randrange(3)}" if rnd.random() < 0.9 else None
        amount = round(rnd.uniform(1, 200), 2)
        arrival = time_ms + rnd.uniform(0, 86_400_000)
        keyed.append((arrival, len(keyed), ("tx", tid, customer, terminal, time_ms, amount)))
        if rnd.random() < 0.05:
            keyed.append((arrival + 1, len(keyed),
                          ("tx", tid, customer, terminal, time_ms, amount)))
        if rnd.random() < 0.5:
            # Within the lateness of its labeled_at (so both computers can still revise
            # what it reaches); a label known within hours often arrives before its event.
            labeled_at = time_ms + (rnd.randrange(180) * 60_000 if rnd.random() < 0.3
                                    else rnd.randrange(10 * 24) * 3_600_000)
            label_arrival = labeled_at + rnd.uniform(0, 86_400_000)
            keyed.append((label_arrival, len(keyed), ("label", tid, customer, terminal,
                                                      time_ms, labeled_at, rnd.random() < 0.4)))
    keyed.sort(key=lambda item: (item[0], item[1]))
    compared = 0
    for _, _, item in keyed:
        if item[0] == "tx":
            _, tid, customer, terminal, time_ms, amount = item
            source = "a" if customer == "c0" else "b"
            expected = classic.on_transaction(tid, customer, terminal, time_ms, amount,
                                              source=source)
            event = {"transaction_id": tid, "event_time": time_ms, "customer_id": customer,
                     "amount": amount}
            if terminal is not None:
                event["terminal_id"] = terminal
            got = generic.on_event(event, source=source)
        else:
            _, tid, customer, terminal, time_ms, labeled_at, fraud = item
            expected = classic.on_label(tid, customer, terminal, time_ms, labeled_at, fraud,
                                        source="labels")
            got = generic.on_label(tid, labeled_at, fraud, transaction_time_ms=time_ms,
                                   source="labels")
        assert [(e.transaction_id, e.revision, e.ids, e.time_ms, e.amount) for e in got] == [
            (e.transaction_id, e.revision, e.ids, e.time_ms, e.amount) for e in expected]
        for mine, theirs in zip(got, expected, strict=True):
            assert mine.vector == pytest.approx(theirs.vector, rel=1e-9, abs=1e-9)
            compared += 1
    assert compared > 120 and generic.revisions == classic.revisions > 0


# -- guarantees, one at a time -------------------------------------------------------


def _event(tid: str, time_ms: int, customer: str = "c", **fields: Any) -> dict[str, Any]:
    return {"transaction_id": tid, "event_time": time_ms, "customer_id": customer,
            "country": "FR", "amount": 10.0, **fields}


def test_an_event_beyond_the_lateness_is_refused_and_changes_nothing() -> None:
    computer = GenericStreamingComputer(EVERY_KIND, allowed_lateness=MINUTE)
    computer.on_event(_event("a", ORIGIN_MS))
    computer.on_event(_event("b", ORIGIN_MS + 10 * 60_000))
    computer.on_event(_event("c", ORIGIN_MS + 9 * 60_000 + 1))  # within a minute: accepted
    before = (len(computer), dict(computer.recent), computer.watermark_ms)
    with pytest.raises(LateEvent, match="behind the watermark"):
        computer.on_event(_event("d", ORIGIN_MS + 9 * 60_000 - 1))
    assert (len(computer), dict(computer.recent), computer.watermark_ms) == before
    assert "d" not in computer.events


def test_the_watermark_waits_for_every_source() -> None:
    computer = GenericStreamingComputer(EVERY_KIND, allowed_lateness=MINUTE)
    computer.expect_sources(["p0", "p1"])
    computer.on_event(_event("a", ORIGIN_MS + 3_600_000), source="p0")
    assert computer.watermark_ms is None  # p1 has not delivered: nothing is late yet
    computer.on_event(_event("b", ORIGIN_MS), source="p1")
    assert computer.watermark_ms == ORIGIN_MS
    with pytest.raises(LateEvent):
        computer.on_event(_event("c", ORIGIN_MS - 61_000), source="p0")


def test_invalid_and_conflicting_events_are_refused_before_any_change() -> None:
    computer = GenericStreamingComputer(EVERY_KIND, allowed_lateness=MINUTE)
    computer.on_event(_event("a", ORIGIN_MS))
    with pytest.raises(InvalidEvent, match="amount"):
        computer.on_event(_event("b", ORIGIN_MS, amount=float("inf")))
    with pytest.raises(InvalidEvent, match="event_time"):
        computer.on_event(_event("b", "2018-04-01T00:00:00Z"))  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent, match="aware datetime"):
        computer.on_event(_event("b", datetime(2018, 4, 1)))  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent, match="quantity"):
        computer.on_event(_event("b", ORIGIN_MS, quantity="two"))
    with pytest.raises(DuplicateEventId):
        computer.on_event(_event("a", ORIGIN_MS + 1))
    assert set(computer.events) == {"a"} and len(computer) == 2  # customer, card x country
    aware = computer.on_event(_event("b", datetime(2018, 4, 1, 0, 1, tzinfo=UTC)))  # type: ignore[arg-type]
    assert aware[0].time_ms == ORIGIN_MS + 60_000


def test_a_label_first_joins_its_event_and_a_late_label_revises() -> None:
    fs = FeatureSet("labels", [
        WindowAggregate("frauds", CUSTOMER, Agg.SUM, HOUR, field="is_fraud",
                        label_delay=timedelta(0)),
    ], schema=TXN)
    computer = GenericStreamingComputer(fs, allowed_lateness=HOUR)
    assert computer.on_label("a", ORIGIN_MS + 60_000, True) == []  # before its event
    assert computer.on_event(_event("a", ORIGIN_MS))[0].vector == {"frauds": 0.0}
    b = computer.on_event(_event("b", ORIGIN_MS + 120_000))
    assert b[0].vector == {"frauds": 1.0}  # a's label known at 60 s <= 120 s
    revised = computer.on_label("b", ORIGIN_MS + 120_000, True)
    assert [(e.transaction_id, e.revision, e.vector) for e in revised] == [
        ("b", 1, {"frauds": 2.0})]
    # An earlier label of "a" as genuine wins over its fraud label: b is revised down.
    revised = computer.on_label("a", ORIGIN_MS + 30_000, False)
    assert [(e.transaction_id, e.revision, e.vector) for e in revised] == [
        ("b", 2, {"frauds": 1.0})]
    assert computer.on_label("a", ORIGIN_MS + 90_000, True) == []  # later: ignored


def test_a_label_reaches_a_lifetime_window_that_folded_its_event() -> None:
    fs = FeatureSet("life_frauds", [
        WindowAggregate("frauds_ever", CUSTOMER, Agg.SUM, LIFETIME, field="is_fraud",
                        label_delay=timedelta(0)),
        WindowAggregate("n_10m", CUSTOMER, Agg.COUNT, 10 * MINUTE),
    ], schema=TXN)
    computer = GenericStreamingComputer(fs, allowed_lateness=MINUTE,
                                        label_horizon=timedelta(days=1))
    for i in range(4):  # e0 is folded by e2 (older than 11 min behind the watermark)
        computer.on_event(_event(f"e{i}", ORIGIN_MS + i * 30 * 60_000))
    state = computer.states[(0, "c")]
    assert state.folded is not None and state.folded.count >= 1
    assert computer.on_label("e0", ORIGIN_MS + 95 * 60_000, True) == []  # nothing at >= 95 min
    assert computer.on_event(_event("e4", ORIGIN_MS + 100 * 60_000))[0].vector == {
        "frauds_ever": 1.0, "n_10m": 1.0}
    # An earlier label says genuine: it wins, and e4 (still revisable) is revised.
    revised = computer.on_label("e0", ORIGIN_MS + 20 * 60_000, False)
    assert [(e.transaction_id, e.revision, e.vector["frauds_ever"]) for e in revised] == [
        ("e4", 1, 0.0)]
    assert state.folded.fraud_at == []
    # Past the label horizon the event is forgotten: its label waits, unjoined.
    late = GenericStreamingComputer(fs, allowed_lateness=MINUTE, label_horizon=HOUR)
    for i in range(6):
        late.on_event(_event(f"e{i}", ORIGIN_MS + i * 30 * 60_000))
    assert "e0" not in late.events
    assert late.on_label("e0", ORIGIN_MS + 160 * 60_000, True) == []
    assert late.on_event(_event("e6", ORIGIN_MS + 180 * 60_000))[0].vector["frauds_ever"] == 0


def test_lifetime_windows_keep_only_a_summary_of_old_events() -> None:
    fs = FeatureSet("life", [
        WindowAggregate("age", CUSTOMER, Agg.TIME_SINCE_FIRST, LIFETIME),
        WindowAggregate("n", CUSTOMER, Agg.COUNT, LIFETIME),
        WindowAggregate("countries", CUSTOMER, Agg.COUNT_DISTINCT, LIFETIME, field="country"),
        WindowAggregate("recent", CUSTOMER, Agg.COUNT, HOUR),
    ], schema=TXN)
    computer = GenericStreamingComputer(fs, allowed_lateness=MINUTE, sweep_every=HOUR)
    for i in range(48):  # two days, one an hour
        emitted = computer.on_event(_event(f"e{i}", ORIGIN_MS + i * 3_600_000,
                                           country=("FR", "DE", "PT")[i % 3]))
    assert emitted[0].vector == {"age": 47 * 3600.0, "n": 48.0, "countries": 3.0,
                                 "recent": 1.0}
    state = computer.states[(0, "c")]
    assert len(state.events) <= 3 and state.folded is not None and state.folded.count >= 46
    assert len(computer.events) <= 3 and len(computer.recent) <= 1


def test_an_event_without_an_optional_key_belongs_to_no_entity_of_it() -> None:
    computer = GenericStreamingComputer(EVERY_KIND, allowed_lateness=MINUTE)
    vector = computer.on_event(_event("a", ORIGIN_MS))[0].vector
    assert vector["dev_n_10m"] == 0.0 and vector["term_risk_1h_d"] == -1.0
    assert vector["card_dev_age"] == 0.0 and vector["channel_code"] == -1.0
    assert vector["quantity"] == 1.0 and vector["card_present"] == 0.0  # declared defaults
    assert all(key[0] != 1 for key in computer.states)  # no terminal state


# -- checkpoints ---------------------------------------------------------------------


@pytest.mark.parametrize("cut", [0.3, 0.7])
def test_a_restored_snapshot_continues_as_the_saved_computer(cut: float) -> None:
    """Saved mid-stream (JSON and back), restored into a new computer: from there both
    emit the same vectors and revisions, and the restored one ends at the oracle."""
    scene = scenario(9, _txn_event, n=200, span=8 * HOUR, lateness=10 * MINUTE,
                     label_lag=4 * HOUR, grid=timedelta(seconds=30))
    split = int(len(scene.deliveries) * cut)
    saved = GenericStreamingComputer(EVERY_KIND, allowed_lateness=scene.lateness,
                                     sweep_every=HOUR)
    last = run(saved, Scenario(scene.events, scene.labels, scene.deliveries[:split]))
    restored = GenericStreamingComputer(EVERY_KIND, allowed_lateness=scene.lateness,
                                        sweep_every=HOUR)
    restore(restored, json.loads(json.dumps(snapshot(saved))))
    assert snapshot(restored) == json.loads(json.dumps(snapshot(saved)))
    rest = Scenario(scene.events, scene.labels, scene.deliveries[split:])
    for kind, item, source in rest.deliveries:
        if kind == "event":
            outputs = [c.on_event(item, source=source) for c in (saved, restored)]
        else:
            outputs = [c.on_label(item["transaction_id"], item["labeled_at"],
                                  item["is_fraud"], source=source) for c in (saved, restored)]
        assert outputs[0] == outputs[1]
        for emission in outputs[1]:
            last[emission.transaction_id] = emission
    assert_matches_oracle(EVERY_KIND, scene, last)


def test_a_snapshot_of_another_feature_set_version_is_refused() -> None:
    computer = GenericStreamingComputer(EVERY_KIND)
    computer.on_event(_event("a", ORIGIN_MS))
    with pytest.raises(ValueError, match="feature set version"):
        restore(GenericStreamingComputer(BASELINE), snapshot(computer))
    with pytest.raises(ValueError, match="fresh computer"):
        restore(computer, snapshot(computer))


@pytest.mark.parametrize("name", ["rtml_features.stream_generic",
                                  "rtml_features.generic_aggregates",
                                  "rtml_features.generic_rows"])
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_a_label_whose_event_never_comes_is_forgotten_once_the_event_would_be_late() -> None:
    computer = GenericStreamingComputer(EVERY_KIND, allowed_lateness=MINUTE,
                                        sweep_every=10 * MINUTE)
    computer.on_event(_event("a", ORIGIN_MS))
    computer.on_label("ghost", ORIGIN_MS + 5 * 60_000, True, transaction_time_ms=ORIGIN_MS)
    computer.on_label("later", ORIGIN_MS + 90 * 60_000, True)  # no event time: by labeled_at
    assert set(computer.pending_labels) == {"ghost", "later"}
    for i in range(1, 7):
        computer.on_event(_event(f"b{i}", ORIGIN_MS + i * 10 * 60_000))
    assert set(computer.pending_labels) == {"later"}
    with pytest.raises(LateEvent):  # the ghost's event would be refused anyway
        computer.on_event(_event("ghost", ORIGIN_MS))


def test_the_newest_vector_of_each_entity_is_tracked_for_an_online_store() -> None:
    """Whatever the arrival order, the tracked vectors end as each entity's newest
    event's last vector (what a latest-values store must hold)."""
    scene = scenario(21, _txn_event, n=120, span=4 * HOUR, lateness=10 * MINUTE,
                     label_lag=HOUR, grid=MINUTE)
    computer = GenericStreamingComputer(EVERY_KIND, allowed_lateness=scene.lateness,
                                        track_newest=True)
    store: dict[tuple[str, str], Emission] = {}
    last: dict[str, Emission] = {}
    for kind, item, source in scene.deliveries:
        emitted = (computer.on_event(item, source=source) if kind == "event" else
                   computer.on_label(item["transaction_id"], item["labeled_at"],
                                     item["is_fraud"], source=source))
        last.update((e.transaction_id, e) for e in emitted)
        store.update(computer.take_newest_vectors())
    assert computer.take_newest_vectors() == {}
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for event in scene.events:
        for entity in EVERY_KIND.entities:
            entity_id = entity.id_of(event)
            if entity_id is None:
                continue
            key = (entity.name, entity_id)
            held = newest.get(key)
            if held is None or (event["event_time"], event["transaction_id"]) > (
                    held["event_time"], held["transaction_id"]):
                newest[key] = event
    assert set(store) == set(newest)
    for key, event in newest.items():
        assert store[key] == last[event["transaction_id"]]
    assert GenericStreamingComputer(EVERY_KIND).take_newest_vectors() == {}
