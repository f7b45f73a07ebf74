"""The batch engine computes every definition exactly as the reference oracle does.

:mod:`rtml_features.oracle` applies the definitions' docstring literally (loop over
the entity's events, filter the window, aggregate); the batch engine gets the same
figures from sorted keys, prefix sums, interval covers, a block tree and a tie order.
Random event sets (hypothesis) hold them together to 1e-9 on what is easy to get
wrong: simultaneous events (a window includes every event stamped ``<= t``;
"previous" is decided by the event id), rows given out of order, windows whose bounds
fall exactly on events, optional fields and key fields absent, labels that arrive
late or twice, label delays on aggregates that read no label, compound entities and
LIFETIME windows. The payments example repo is checked on a generated frame with
its columns, so the shipped feature set is covered as declared.
"""

from __future__ import annotations

import math
import random
import sys
import types
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtml_common.schema import EventSchema, Field, FieldType
from rtml_features.batch import SpineError, compute_features
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
from rtml_features.oracle import oracle_features

T0_MS = 1_764_547_200_000  # 2025-12-01 00:00 UTC
CHANNELS = ("pos", "web", "app")
SCHEMA = EventSchema(
    name="pay", topic="pay", id_field="pid", event_time="at", partition_key="card",
    fields=[Field("pid", FieldType.STRING), Field("at", FieldType.TIMESTAMP),
            Field("card", FieldType.STRING),
            Field("device", FieldType.STRING, required=False),
            Field("merchant", FieldType.STRING, required=False),
            Field("amount", FieldType.NUMBER, minimum=0, maximum=1e9),
            Field("tip", FieldType.NUMBER, required=False, default=1.5),
            Field("web", FieldType.BOOLEAN, required=False, default=False),
            Field("channel", FieldType.STRING, categories=CHANNELS, required=False)])
CARD = Entity("card", key="card")
DEVICE = Entity("device", key="device")
CARD_DEVICE = Entity("card_device", key=("card", "device"))
CARD_MERCHANT = Entity("card_merchant", key=("card", "merchant"))


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


W = WindowAggregate
CARD_DEVICES = W("card_devices_15s", CARD, Agg.COUNT_DISTINCT, seconds(15), field="device",
                 empty=-2.0)
CARD_COUNT = W("card_count_15s", CARD, Agg.COUNT, seconds(15))
#: Every new aggregation and row kind, over single and compound entities, LIFETIME, label
#: delays on aggregates reading no label, non-zero empty values and a ratio of new parts.
GENERIC = FeatureSet("generic", [
    RowFeature("amount_value", RowKind.FIELD, field="amount"),
    RowFeature("tip_value", RowKind.FIELD, field="tip"),
    RowFeature("web_value", RowKind.FIELD, field="web"),
    RowFeature("hour", RowKind.HOUR_OF_DAY), RowFeature("weekday", RowKind.DAY_OF_WEEK),
    RowFeature("weekend", RowKind.WEEKEND), RowFeature("night", RowKind.NIGHT),
    RowFeature("channel_code", RowKind.CATEGORY_CODE, field="channel"),
    *one_hot("channel", "channel", CHANNELS),
    W("card_amount_sd_20s", CARD, Agg.STDDEV, seconds(20), field="amount", empty=-1.0),
    W("pair_tip_sd_life", CARD_DEVICE, Agg.STDDEV, LIFETIME, field="tip"),
    CARD_DEVICES, CARD_COUNT, Ratio("card_device_share", CARD_DEVICES, CARD_COUNT, default=-9.0),
    W("device_cards_30s", DEVICE, Agg.COUNT_DISTINCT, seconds(30), field="card"),
    W("card_merchants_life", CARD, Agg.COUNT_DISTINCT, LIFETIME, field="merchant"),
    W("card_channels_late", CARD, Agg.COUNT_DISTINCT, seconds(10), field="channel",
      label_delay=seconds(3)),
    W("card_tips_distinct", CARD, Agg.COUNT_DISTINCT, seconds(12), field="tip"),
    W("card_last_amount", CARD, Agg.LAST, seconds(10), field="amount", empty=-3.0),
    W("card_last_web_late", CARD, Agg.LAST, seconds(10), field="web", label_delay=seconds(1)),
    W("pair_last_tip", CARD_DEVICE, Agg.LAST, LIFETIME, field="tip"),
    W("card_gap_s", CARD, Agg.TIME_SINCE_PREVIOUS, seconds(10), empty=-4.0),
    W("merchant_pair_gap_s", CARD_MERCHANT, Agg.TIME_SINCE_PREVIOUS, LIFETIME),
    W("pair_age_s", CARD_DEVICE, Agg.TIME_SINCE_FIRST, LIFETIME),
    W("card_age_late", CARD, Agg.TIME_SINCE_FIRST, seconds(5), label_delay=seconds(3),
      empty=-5.0),
    W("card_tip_max_late", CARD, Agg.MAX, seconds(10), field="tip", label_delay=seconds(4),
      empty=-6.0),
    W("card_amount_min", CARD, Agg.MIN, seconds(10), field="amount", empty=-8.0),
    W("card_amount_sum_late", CARD, Agg.SUM, seconds(10), field="amount",
      label_delay=seconds(5)),
    W("card_frauds_late", CARD, Agg.SUM, seconds(30), field="is_fraud", label_delay=seconds(2)),
    W("pair_fraud_rate", CARD_DEVICE, Agg.MEAN, seconds(20), field="is_fraud",
      label_delay=timedelta(0), empty=-0.5),
    W("pair_web_rate_life", CARD_DEVICE, Agg.MEAN, LIFETIME, field="web"),
    W("device_count_8s", DEVICE, Agg.COUNT, seconds(8), empty=-7.0),
], schema=SCHEMA)


def frame_of(events: list[dict[str, Any]], schema: EventSchema) -> pd.DataFrame:
    """Events as the batch engine's frame: every schema column, times as UTC datetimes."""
    frame = pd.DataFrame(events).reindex(columns=schema.names)
    frame[schema.event_time] = pd.to_datetime(frame[schema.event_time], unit="ms", utc=True)
    return frame


def labels_frame(labels: list[dict[str, Any]]) -> pd.DataFrame | None:
    if not labels:
        return None
    frame = pd.DataFrame(labels)
    frame["labeled_at"] = pd.to_datetime(frame["labeled_at"], unit="ms", utc=True)
    return frame


def assert_matches_oracle(feature_set: FeatureSet, events: list[dict[str, Any]],
                          labels: list[dict[str, Any]], history_order: list[int],
                          spine_rows: list[int]) -> None:
    """Batch over the history in ``history_order`` at the ``spine_rows`` == the oracle.

    Spine rows in the history's own order are given as the history frame itself.
    """
    expected = oracle_features(feature_set, events, labels)
    history = frame_of([events[i] for i in history_order], feature_set.schema)
    if spine_rows == history_order:  # the history frame itself (the engine skips lookups)
        spine = history
    else:
        spine = frame_of([events[i] for i in spine_rows], feature_set.schema)
    result = compute_features(feature_set, spine, history, labels_frame(labels))
    assert result[feature_set.schema.id_field].tolist() == [events[i][feature_set.schema.id_field]
                                                            for i in spine_rows]
    for row, event_index in enumerate(spine_rows):
        for name, want in expected[event_index].items():
            got = float(result[name].iloc[row])
            assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), (
                f"{name} of event {events[event_index]}: batch {got!r}, oracle {want!r}")


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                        list[int], list[int]]:
    """Events on a coarse time grid (collisions, exact window bounds), with optional
    fields absent at random, labels late or repeated, and a shuffled history and spine."""
    n = draw(st.integers(1, 36))
    grid_ms = draw(st.sampled_from([500, 1000, 2500]))
    ids = draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n, unique=True))
    events = []
    for i in range(n):
        event: dict[str, Any] = {
            "pid": str(ids[i]),  # as strings: "10" < "9", the id order the oracle uses
            "at": T0_MS + draw(st.integers(0, 40)) * grid_ms,
            "card": draw(st.sampled_from(["c1", "c2", "c3"])),
            "amount": draw(st.sampled_from([0.0, 2.0, 50.0, 50.0, 1234.5]))
            + draw(st.sampled_from([0.0, 0.0, 0.01, 0.3])),
        }
        optional = {"device": st.sampled_from(["d1", "d2", "d3"]),
                    "merchant": st.sampled_from(["m1", "m2"]),
                    "tip": st.sampled_from([0.0, 1.5, 3.0]), "web": st.booleans(),
                    "channel": st.sampled_from(CHANNELS)}
        for name, values in optional.items():
            if draw(st.booleans()):
                event[name] = draw(values)
        events.append(event)
    labels = []
    for event in events:
        for _ in range(draw(st.integers(0, 2))):  # none, one, or relabelled
            labels.append({"transaction_id": event["pid"], "is_fraud": draw(st.booleans()),
                           "labeled_at": event["at"] + draw(st.integers(0, 30)) * grid_ms})
    history_order = draw(st.permutations(range(n)))
    if draw(st.booleans()):
        spine_rows = history_order  # features of the history itself, as training computes
    else:
        spine_rows = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    return events, labels, history_order, spine_rows


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_batch_equals_the_oracle_on_random_event_sets(
        scenario: tuple[list[dict[str, Any]], list[dict[str, Any]], list[int], list[int]]
) -> None:
    events, labels, history_order, spine_rows = scenario
    assert_matches_oracle(GENERIC, events, labels, history_order, spine_rows)


def test_simultaneous_events_see_each_other_by_id_order() -> None:
    """Three payments in one millisecond: each one's previous is the newest *other* one in
    (time, id) order, so the largest id's previous is the middle one and the others'
    is the largest (it is in their window too)."""
    events = [{"pid": pid, "at": T0_MS, "card": "c1", "amount": amount}
              for pid, amount in (("b", 2.0), ("c", 3.0), ("a", 1.0))]
    last = W("last", CARD, Agg.LAST, seconds(1), field="amount")
    gap = W("gap", CARD, Agg.TIME_SINCE_PREVIOUS, seconds(1), empty=-1.0)
    fs = FeatureSet("ties", [last, gap], schema=SCHEMA)
    result = compute_features(fs, frame_of(events, SCHEMA), frame_of(events, SCHEMA))
    assert result["last"].tolist() == [3.0, 2.0, 3.0]
    assert result["gap"].tolist() == [0.0, 0.0, 0.0]


def test_stddev_of_equal_amounts_is_exactly_zero_and_large_means_keep_their_digits() -> None:
    """Prefix sums of squares would leave ~1e-5 of noise on 1e6-sized amounts with
    cents of spread; the block tree of moments gives the oracle's figure."""
    amounts = [1e6 + 0.01 * (i % 3) for i in range(12)] + [50.0] * 5
    events = [{"pid": f"p{i:02d}", "at": T0_MS + i * 1000, "card": "c" if i < 12 else "d",
               "amount": a} for i, a in enumerate(amounts)]
    sd = W("sd", CARD, Agg.STDDEV, LIFETIME, field="amount")
    fs = FeatureSet("sd", [sd], schema=SCHEMA)
    result = compute_features(fs, frame_of(events, SCHEMA), frame_of(events, SCHEMA))
    assert result["sd"].iloc[12:].tolist() == [0.0] * 5
    expected = [v["sd"] for v in oracle_features(fs, events)]
    assert np.allclose(result["sd"], expected, rtol=1e-9, atol=1e-12)


def test_lifetime_windows_reach_across_years() -> None:
    """LIFETIME (1,000 years) is cut to the data's span, so a card seen two and a half
    years apart still counts its first payment without overflowing the key encoding."""
    events = [{"pid": "a", "at": T0_MS, "card": "c1", "amount": 1.0, "merchant": "m1"},
              {"pid": "b", "at": T0_MS + 900 * 86_400_000, "card": "c1", "amount": 1.0,
               "merchant": "m2"}]
    fs = FeatureSet("life", [W("age", CARD, Agg.TIME_SINCE_FIRST, LIFETIME),
                             W("merchants", CARD, Agg.COUNT_DISTINCT, LIFETIME, field="merchant"),
                             W("n", CARD, Agg.COUNT, LIFETIME, label_delay=LIFETIME)],
                    schema=SCHEMA)
    frame = frame_of(events, SCHEMA)
    result = compute_features(fs, frame, frame)
    assert result["age"].tolist() == [0.0, 900 * 86_400.0]
    assert result["merchants"].tolist() == [1.0, 2.0]
    assert result["n"].tolist() == [0.0, 0.0]


def test_a_spine_row_not_in_the_history_sees_the_history_only() -> None:
    """A request-time row absent from the history: its window holds the history events
    before it, and every one of them is "other" (none shares its id)."""
    history = frame_of([{"pid": "a", "at": T0_MS, "card": "c1", "amount": 4.0}], SCHEMA)
    spine = frame_of([{"pid": "new", "at": T0_MS + 2000, "card": "c1", "amount": 9.0},
                      {"pid": "x", "at": T0_MS, "card": "c9", "amount": 1.0}], SCHEMA)
    fs = FeatureSet("req", [W("last", CARD, Agg.LAST, seconds(10), field="amount", empty=-1.0),
                            W("gap", CARD, Agg.TIME_SINCE_PREVIOUS, seconds(10)),
                            W("sd", CARD, Agg.STDDEV, seconds(10), field="amount", empty=-2.0)],
                    schema=SCHEMA)
    result = compute_features(fs, spine, history)
    assert result[["last", "gap", "sd"]].values.tolist() == [[4.0, 2.0, 0.0], [-1.0, 0.0, -2.0]]


def test_a_spine_without_event_ids_is_refused_when_the_previous_event_is_read() -> None:
    events = frame_of([{"pid": "a", "at": T0_MS, "card": "c1", "amount": 4.0}], SCHEMA)
    fs = FeatureSet("prev", [W("gap", CARD, Agg.TIME_SINCE_PREVIOUS, seconds(10))],
                    schema=SCHEMA)
    with pytest.raises(SpineError, match=r"spine lacks column\(s\) \['pid'\]"):
        compute_features(fs, events.drop(columns=["pid"]), events)


def test_numeric_fields_are_checked_against_their_declared_bounds() -> None:
    events = frame_of([{"pid": "a", "at": T0_MS, "card": "c1", "amount": 4.0, "tip": -1.0}],
                      SCHEMA)
    fs = FeatureSet("tips", [W("tips", CARD, Agg.SUM, seconds(10), field="tip")],
                    schema=SCHEMA)
    assert compute_features(fs, events, events)["tips"].tolist() == [-1.0]  # unbounded: fine
    bounded = events.assign(amount=[math.inf])
    fs = FeatureSet("amounts", [W("total", CARD, Agg.SUM, seconds(10), field="amount")],
                    schema=SCHEMA)
    with pytest.raises(SpineError, match=r"history: 1 amount\(s\) not a finite number"):
        compute_features(fs, events, bounded)


# --- the payments example repo -------------------------------------------------------

PAYMENTS_REPO = Path(__file__).resolve().parents[3] / "examples" / "feature_repos" / "payments"


def load_payments() -> types.ModuleType:
    """The example repo imported as a package (its files use relative imports)."""
    name = "payments_repo_batch_generic"
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [str(PAYMENTS_REPO)]
        sys.modules[name] = package
    __import__(f"{name}.features")
    return sys.modules[f"{name}.features"]


def payment_events(n: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Payments over three weeks with bursts (cards tested on one device or IP address in
    minutes), card-present payments without an IP, trips abroad, and labels a day to a
    week late, so every window kind of the set, the 7-day delayed ones too, sees events."""
    schema_module = sys.modules[load_payments().__name__.rsplit(".", 1)[0] + ".schema"]
    categories, channels = schema_module.MERCHANT_CATEGORIES, schema_module.CHANNELS
    rng = random.Random(seed)
    events = []
    for i in range(n):
        burst = rng.random() < 0.3
        at = T0_MS + (rng.randrange(0, 600_000) if burst else rng.randrange(0, 21 * 86_400_000))
        channel = rng.choice(channels)
        card = f"c{rng.randrange(12 if not burst else 40)}"
        event: dict[str, Any] = {
            "transaction_id": f"tx{rng.randrange(10**9)}-{i}", "event_time": at,
            "customer_id": card, "terminal_id": f"t{rng.randrange(6)}",
            "amount": round(rng.choice([rng.uniform(1, 300), 1.0, 25.0]), 2),
            "device_id": "dev-burst" if burst else f"dev-{card}-{rng.randrange(2)}",
            "merchant_category": rng.choice(categories),
            "country": rng.choice(["FR", "FR", "FR", "DE", "US"]),
            "channel": channel,
        }
        if rng.random() < 0.15:
            del event["terminal_id"]
        if channel != "pos":
            event["ip_address"] = "10.0.0.1" if burst else f"10.1.{rng.randrange(8)}.1"
        events.append(event)
    labels = [{"transaction_id": e["transaction_id"], "is_fraud": rng.random() < 0.2,
               "labeled_at": e["event_time"] + rng.randrange(86_400_000, 8 * 86_400_000)}
              for e in events if rng.random() < 0.8]
    return events, labels


def test_the_payments_example_set_equals_the_oracle_on_a_generated_frame() -> None:
    payments = load_payments().PAYMENTS
    events, labels = payment_events(260, seed=20)
    order = list(range(len(events)))
    random.Random(1).shuffle(order)
    assert_matches_oracle(payments, events, labels, order, list(reversed(order)))
    assert_matches_oracle(payments, events, labels, order, order)


@pytest.mark.parametrize("name", ["batch_keys", "batch_spread", "batch_distinct",
                                  "batch_previous"])
def test_the_batch_modules_docstring_examples_hold(name: str) -> None:
    """Each module's example is its rule on a few values (read before the code)."""
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"rtml_features.{name}"))
    assert result.attempted > 0 and result.failed == 0
