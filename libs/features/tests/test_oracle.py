"""The reference oracle against values worked out by hand.

The oracle is what batch, streaming and request-time engines are held to, so its own
figures must come from the definitions' docstring, not from another engine: each test
here spells out the events and the expected value of one aggregation or row kind.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rtml_common.schema import EventSchema, Field, FieldType
from rtml_features.definitions import (
    LIFETIME,
    Agg,
    Entity,
    FeatureSet,
    Ratio,
    RowFeature,
    RowKind,
    WindowAggregate,
)
from rtml_features.oracle import oracle_features

SCHEMA = EventSchema(
    name="pay", topic="pay", id_field="pid", event_time="at", partition_key="card",
    fields=[Field("pid", FieldType.STRING), Field("at", FieldType.TIMESTAMP),
            Field("card", FieldType.STRING), Field("device", FieldType.STRING, required=False),
            Field("amount", FieldType.NUMBER),
            Field("tip", FieldType.NUMBER, required=False, default=1.5),
            Field("web", FieldType.BOOLEAN, required=False, default=False),
            Field("channel", FieldType.STRING, categories=("pos", "web", "app"),
                  required=False)])
CARD = Entity("card", key="card")
DEVICE = Entity("device", key="device")
PAIR = Entity("card_device", key=("card", "device"))
S = 1000  # ms per second


def ev(pid: str, at_s: float, amount: float = 1.0, card: str = "c", **more: object) -> dict:
    return {"pid": pid, "at": round(at_s * S), "card": card, "amount": amount, **more}


def values(features: list, events: list[dict], labels: list[dict] | None = None) -> list[dict]:
    return oracle_features(FeatureSet("t", features, schema=SCHEMA), events, labels or [])


def column(features: list, events: list[dict], name: str, labels: list[dict] | None = None
           ) -> list[float]:
    return [v[name] for v in values(features, events, labels)]


def test_stddev_is_the_population_deviation_and_zero_below_two_events() -> None:
    f = WindowAggregate("sd", CARD, Agg.STDDEV, timedelta(seconds=10), field="amount")
    events = [ev("a", 0, 2.0), ev("b", 1, 4.0), ev("c", 2, 9.0), ev("d", 20, 5.0)]
    # {2}: 0; {2,4}: 1; {2,4,9}: mean 5, var (9+1+16)/3; d alone (a..c left the window): 0
    assert column([f], events, "sd") == pytest.approx([0.0, 1.0, (26 / 3) ** 0.5, 0.0])


def test_count_distinct_skips_missing_values_and_forgets_values_leaving_the_window() -> None:
    f = WindowAggregate("nd", CARD, Agg.COUNT_DISTINCT, timedelta(seconds=10), field="device",
                        empty=-1.0)
    events = [ev("a", 0), ev("b", 1, device="d1"), ev("c", 2, device="d2"),
              ev("d", 3, device="d1"), ev("e", 11.5, device="d1"), ev("f", 30)]
    # a: no value at all -> empty; e: window (1.5, 11.5] holds c(d2), d(d1), e(d1) -> 2
    assert column([f], events, "nd") == [-1.0, 1.0, 2.0, 2.0, 2.0, -1.0]


def test_last_is_the_previous_event_in_time_then_id_order_simultaneous_included() -> None:
    f = WindowAggregate("last", CARD, Agg.LAST, timedelta(seconds=10), field="amount",
                        empty=-1.0)
    events = [ev("b", 5, 20.0), ev("a", 5, 10.0), ev("c", 0, 7.0), ev("z", 30, 1.0)]
    # c: nothing before; a (t=5): newest other is b (same time, larger id); b: newest other
    # is a (same time, smaller id, after c); z: the others left the window
    assert column([f], events, "last") == [10.0, 20.0, -1.0, -1.0]


def test_time_since_previous_in_seconds_zero_for_a_simultaneous_event() -> None:
    f = WindowAggregate("gap", CARD, Agg.TIME_SINCE_PREVIOUS, timedelta(minutes=1),
                        empty=99.0)
    events = [ev("a", 0), ev("b", 2.5), ev("c", 2.5), ev("d", 70), ev("e", 0, card="x")]
    assert column([f], events, "gap") == [99.0, 0.0, 0.0, 99.0, 99.0]


def test_time_since_first_includes_the_current_event_and_spans_lifetime() -> None:
    life = WindowAggregate("age", PAIR, Agg.TIME_SINCE_FIRST, LIFETIME)
    hour = WindowAggregate("age1h", CARD, Agg.TIME_SINCE_FIRST, timedelta(hours=1))
    events = [ev("a", 0, device="d"), ev("b", 4000, device="d"), ev("c", 7200, device="d"),
              ev("d", 7200, device="e")]
    result = values([life, hour], events)
    assert [v["age"] for v in result] == [0.0, 4000.0, 7200.0, 0.0]
    # (t - 1h, t]: at 4000 s the event at 0 is out; c and d (same time) see b first
    assert [v["age1h"] for v in result] == [0.0, 0.0, 3200.0, 3200.0]


def test_an_event_missing_a_key_field_belongs_to_no_entity() -> None:
    count = WindowAggregate("n", DEVICE, Agg.COUNT, timedelta(days=1), empty=-5.0)
    pair = WindowAggregate("np", PAIR, Agg.COUNT, timedelta(days=1))
    events = [ev("a", 0, device="d"), ev("b", 1), ev("c", 2, device="d")]
    result = values([count, pair], events)
    assert [v["n"] for v in result] == [1.0, -5.0, 2.0]
    assert [v["np"] for v in result] == [1.0, 0.0, 2.0]


def test_compound_entities_keep_the_pairs_apart() -> None:
    f = WindowAggregate("sum", PAIR, Agg.SUM, timedelta(days=1), field="amount")
    events = [ev("a", 0, 1.0, card="c1", device="d"), ev("b", 1, 2.0, card="c2", device="d"),
              ev("c", 2, 4.0, card="c1", device="d")]
    assert column([f], events, "sum") == [1.0, 2.0, 5.0]


def test_missing_numeric_fields_read_their_default_and_booleans_count_as_one() -> None:
    tips = WindowAggregate("tips", CARD, Agg.SUM, timedelta(days=1), field="tip")
    web = WindowAggregate("webs", CARD, Agg.MEAN, timedelta(days=1), field="web")
    events = [ev("a", 0, tip=3.0, web=True), ev("b", 1)]
    result = values([tips, web, RowFeature("tip", RowKind.FIELD, field="tip")], events)
    assert [v["tips"] for v in result] == [3.0, 4.5]
    assert [v["webs"] for v in result] == [1.0, 0.5]
    assert [v["tip"] for v in result] == [3.0, 1.5]


def test_label_delay_on_a_plain_aggregate_shifts_the_window() -> None:
    f = WindowAggregate("late_max", CARD, Agg.MAX, timedelta(seconds=10), field="amount",
                        label_delay=timedelta(seconds=5))
    events = [ev("a", 0, 3.0), ev("b", 4, 8.0), ev("c", 5, 1.0), ev("d", 16, 2.0)]
    # window (t-15, t-5]: a at 5 s sees a; d at 16 s sees (1, 11] = b, c
    assert column([f], events, "late_max") == [0.0, 0.0, 3.0, 8.0]


def test_labels_count_only_once_known_and_the_first_label_wins() -> None:
    frauds = WindowAggregate("frauds", CARD, Agg.SUM, timedelta(seconds=100), field="is_fraud",
                             label_delay=timedelta(seconds=10))
    events = [ev("a", 0), ev("b", 1), ev("c", 20), ev("d", 40)]
    labels = [{"transaction_id": "a", "labeled_at": 30 * S, "is_fraud": True},
              {"transaction_id": "a", "labeled_at": 50 * S, "is_fraud": False},
              {"transaction_id": "b", "labeled_at": 15 * S, "is_fraud": True}]
    # c (t=20): window (-90, 10] = a, b; b known (15 <= 20), a not yet (30) -> 1
    # d (t=40): a known at 30 (its later relabel is ignored) -> 2
    assert column([frauds], events, "frauds", labels) == [0.0, 0.0, 1.0, 2.0]


def test_ratio_uses_its_default_on_a_zero_denominator() -> None:
    num = WindowAggregate("s", CARD, Agg.SUM, timedelta(seconds=10), field="amount")
    den = WindowAggregate("n", CARD, Agg.COUNT, timedelta(seconds=10))
    events = [ev("a", 0, 4.0), ev("b", 1, 2.0), ev("c", 1, 5.0, card="x")]
    result = values([Ratio("avg", num, den, default=-1.0)], events)
    assert [v["avg"] for v in result] == [4.0, 3.0, 5.0]


def test_time_row_kinds_and_categorical_codes() -> None:
    features = [RowFeature("hour", RowKind.HOUR_OF_DAY), RowFeature("dow", RowKind.DAY_OF_WEEK),
                RowFeature("we", RowKind.WEEKEND), RowFeature("night", RowKind.NIGHT),
                RowFeature("code", RowKind.CATEGORY_CODE, field="channel"),
                RowFeature("is_web", RowKind.EQUALS, field="channel", value="web")]
    sunday = datetime(2026, 12, 6, 23, 59, 59, 999_000, tzinfo=UTC)
    at_s = sunday.timestamp()
    events = [ev("a", at_s, channel="web"), ev("b", at_s + 0.001, channel="app"),
              ev("c", at_s)]
    result = values(features, events)
    assert result[0] == {"hour": 23.0, "dow": 6.0, "we": 1.0, "night": 0.0, "code": 1.0,
                         "is_web": 1.0}
    assert result[1] == {"hour": 0.0, "dow": 0.0, "we": 0.0, "night": 1.0, "code": 2.0,
                         "is_web": 0.0}
    assert (result[2]["code"], result[2]["is_web"]) == (-1.0, 0.0)


def test_docstring_example() -> None:
    import doctest

    import rtml_features.oracle

    result = doctest.testmod(rtml_features.oracle)
    assert result.attempted > 0 and result.failed == 0
