"""Test support for engines held to the batch engine: one feature set, random streams, the truth.

Every online form of the features (the in-memory prefix logs, their Redis
form, the streaming computer) is pinned to :func:`rtml_features.batch.compute_features`
by property tests over the same inputs: :data:`MIXED` uses every aggregation
and window kind (trailing, label-delayed, delay 0 over labels, min / max
behind a delay, a ratio), :func:`stream_scenarios` draws event streams with
simultaneous events, out-of-order arrival, late labels, events stored past
the request and trimming, and :func:`batch_vector` is the expected answer.
:func:`scaled` stretches a scenario's times so that the named sets' windows of
days (``baseline``, ``extended``) cut through it as MIXED's seconds do.

Imported by tests only: it needs ``hypothesis``, a development dependency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from hypothesis import strategies as st

from rtml_features.batch import compute_features
from rtml_features.definitions import (
    Agg,
    Entity,
    FeatureSet,
    Ratio,
    RowFeature,
    RowKind,
    WindowAggregate,
)

CUSTOMER = Entity("customer", key="customer_id")
TERMINAL = Entity("terminal", key="terminal_id")
SECOND = timedelta(seconds=1)
#: Event times of the scenarios are milliseconds after this.
ORIGIN = datetime(2018, 4, 1, tzinfo=UTC)
HISTORY_COLUMNS = ["transaction_id", "event_time", "customer_id", "terminal_id", "amount"]


def mixed_feature_set(name: str = "mixed-windows") -> FeatureSet:
    """Windows of seconds over every aggregation and window kind, for two entities."""
    s = SECOND
    frauds = WindowAggregate("t_frauds_3s", TERMINAL, Agg.SUM, 3 * s, field="is_fraud",
                             label_delay=2 * s)
    count = WindowAggregate("t_n_3s", TERMINAL, Agg.COUNT, 3 * s, label_delay=2 * s)
    return FeatureSet(name, [
        RowFeature("tx_amount", RowKind.FIELD, field="amount"),
        WindowAggregate("c_n_1s", CUSTOMER, Agg.COUNT, s),
        WindowAggregate("c_sum_1s", CUSTOMER, Agg.SUM, s, field="amount"),
        WindowAggregate("c_mean_5s", CUSTOMER, Agg.MEAN, 5 * s, field="amount"),
        WindowAggregate("c_min_5s", CUSTOMER, Agg.MIN, 5 * s, field="amount"),
        WindowAggregate("c_max_2s", CUSTOMER, Agg.MAX, 2 * s, field="amount"),
        count, frauds, Ratio("t_risk_3s", frauds, count),
        WindowAggregate("t_max_4s_d1", TERMINAL, Agg.MAX, 4 * s, field="amount",
                        label_delay=s),
        WindowAggregate("t_frauds_now_4s", TERMINAL, Agg.SUM, 4 * s, field="is_fraud",
                        label_delay=timedelta(0)),
        WindowAggregate("t_mean_2s_d1", TERMINAL, Agg.MEAN, 2 * s, field="amount",
                        label_delay=s),
    ])


MIXED = mixed_feature_set()

AMOUNTS = st.one_of(st.sampled_from([0.0, 0.01, 1.0, 57.16, 1e6, 123456.789]),
                    st.floats(min_value=0, max_value=1e4, allow_nan=False))
#: (time ms, customer, terminal or None, amount, stored even if later than the request);
#: times collide often: simultaneous events.
EVENTS = st.tuples(st.integers(0, 12_000), st.sampled_from(["c0", "c1", "c2"]),
                   st.sampled_from(["t0", "t1", None]), AMOUNTS, st.booleans())
#: (delay of the label after its event in ms, is_fraud)
LABELS = st.tuples(st.integers(0, 6_000), st.booleans())


def stream_scenarios(extra: Mapping[str, st.SearchStrategy[Any]] | None = None,
                     ) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts of ``events``, ``labels`` (one per event or None), ``request`` (time ms,
    customer, terminal, amount), ``order`` (arrival order of the events),
    ``request_stored`` and ``trim`` flags, plus one entry per ``extra`` strategy."""

    @st.composite
    def scenarios(draw: st.DrawFn) -> dict[str, Any]:
        events = draw(st.lists(EVENTS, min_size=0, max_size=40))
        labels = draw(st.lists(st.one_of(st.none(), LABELS), min_size=len(events),
                               max_size=len(events)))
        request = (draw(st.integers(0, 14_000)), draw(st.sampled_from(["c0", "c1", "c9"])),
                   draw(st.sampled_from(["t0", "t1", "t9", None])), draw(AMOUNTS))
        case = {"events": events, "labels": labels, "request": request,
                "order": draw(st.permutations(range(len(events)))),
                "request_stored": draw(st.booleans()), "trim": draw(st.booleans())}
        for name, strategy in (extra or {}).items():
            case[name] = draw(strategy)
        return case

    return scenarios()


#: :func:`scaled` factor for the named sets: a scenario millisecond becomes 288 s, so a day
#: is 300 of them, the 12 s of events span 40 days and the windows of 1, 7 and 30 days and
#: the 7-day label delay are whole numbers of them (events fall exactly on boundaries too).
DAY_SCALE = 288_000


def scaled(case: Mapping[str, Any], factor: int) -> dict[str, Any]:
    """``case`` of :func:`stream_scenarios` with every time and label delay times ``factor``.

    >>> scaled({"events": [(2, "c0", None, 1.0, False)], "labels": [(3, True)],
    ...         "request": (5, "c0", "t0", 2.0)}, 10)["events"]
    [(20, 'c0', None, 1.0, False)]
    """
    result = dict(case)
    result["events"] = [(ms * factor, *rest) for ms, *rest in case["events"]]
    result["labels"] = [None if label is None else (label[0] * factor, label[1])
                        for label in case["labels"]]
    request_ms, *request = case["request"]
    result["request"] = (request_ms * factor, *request)
    return result


def batch_vector(feature_set: FeatureSet, history: Sequence[tuple[Any, ...]],
                 labels: Sequence[tuple[Any, ...]], request: tuple[Any, ...]) -> dict[str, float]:
    """The batch engine's vector of ``request`` (a history row) over ``history`` and ``labels``
    (transaction_id, labeled_at, is_fraud rows)."""
    spine = pd.DataFrame([request], columns=HISTORY_COLUMNS)
    label_frame = pd.DataFrame(list(labels), columns=["transaction_id", "labeled_at", "is_fraud"])
    result = compute_features(feature_set, spine,
                              pd.DataFrame(list(history), columns=HISTORY_COLUMNS), label_frame)
    return {name: float(result[name].iloc[0]) for name in feature_set.names}
