"""Request-time vectors from prefix logs equal the batch engine's point-in-time vectors.

Hypothesis draws event streams with simultaneous events, out-of-order
arrival, labels known before and after the request, events already stored
beyond the request's time, the request itself already applied or not,
trimmed logs and transactions without a terminal; every feature of the
request must equal :func:`rtml_features.batch.compute_features` over the
same history (plus the request) within 1e-9.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings

from rtml_features.baseline import BASELINE
from rtml_features.batch import compute_features
from rtml_features.definitions import FeatureSet, RowKind
from rtml_features.extended import EXTENDED
from rtml_features.prefix_log import EventLog, LabelLog, OutOfRange
from rtml_features.request_vector import RequestVectors, log_spec
from rtml_features.testing import (
    DAY_SCALE,
    MIXED,
    ORIGIN,
    batch_vector,
    scaled,
    stream_scenarios,
)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(stream_scenarios())
def test_request_vector_equals_batch(case: dict) -> None:
    _check(case, MIXED)


@pytest.mark.parametrize("feature_set", [BASELINE, EXTENDED], ids=lambda fs: fs.name)
@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(stream_scenarios())
def test_named_set_request_vector_equals_batch(feature_set: FeatureSet, case: dict) -> None:
    """The registered sets over the scenarios stretched to days (their windows and delay)."""
    _check(scaled(case, DAY_SCALE), feature_set)


def _check(case: dict, feature_set: FeatureSet) -> None:
    request_ms, customer, terminal, amount = case["request"]
    request_row = ("req", ORIGIN + timedelta(milliseconds=request_ms), customer, terminal, amount)
    rows = [(f"e{i}", ORIGIN + timedelta(milliseconds=ms), c, t, a)
            for i, (ms, c, t, a, _) in enumerate(case["events"])]
    # What the stream has applied when the request arrives: everything up to its time,
    # some events beyond it, maybe the request itself.
    stored = [i for i in case["order"]
              if case["events"][i][0] <= request_ms or case["events"][i][4]]
    specs = {e.name: log_spec(feature_set, e) for e in feature_set.entities}
    logs: dict[str, dict[str, tuple[EventLog, LabelLog | None]]] = {
        e.name: {} for e in feature_set.entities}

    def apply(tid: str, ms: int, ids: dict[str, str | None], value: float) -> None:
        for entity in feature_set.entities:
            entity_id = ids[entity.key]
            if entity_id is None:
                continue
            spec = specs[entity.name]
            pair = logs[entity.name].setdefault(entity_id, (spec.new_event_log(),
                                                            spec.new_label_log()))
            pair[0].add(tid, ms, {"amount": value})

    for i in stored:
        ms, c, t, a, _ = case["events"][i]
        apply(f"e{i}", ms, {"customer_id": c, "terminal_id": t}, a)
    if case["request_stored"]:
        apply("req", request_ms, {"customer_id": customer, "terminal_id": terminal}, amount)
    # Labels in the order they became known: every one known by the request's time,
    # and those of later ones that the stream already applied (stored events only).
    label_rows = []
    known = sorted(((ms + delay, i, fraud) for i, ((ms, *_), lab) in
                    enumerate(zip(case["events"], case["labels"], strict=True))
                    if lab is not None for delay, fraud in [lab]))
    for labeled_ms, i, fraud in known:
        ms, c, t, a, ahead = case["events"][i]
        if i not in stored or (labeled_ms > request_ms and not ahead):
            continue
        label_rows.append((f"e{i}", ORIGIN + timedelta(milliseconds=labeled_ms), fraud))
        for entity in feature_set.entities:
            entity_id = {"customer_id": c, "terminal_id": t}[entity.key]
            if entity_id is not None:
                label_log = logs[entity.name][entity_id][1]
                if label_log is not None:
                    label_log.add(f"e{i}", ms, labeled_ms, {"is_fraud": float(fraud)})
    if case["trim"]:  # the stream trims what no window of a request at its time can reach
        for entity in feature_set.entities:
            for event_log, label_log in logs[entity.name].values():
                cutoff = request_ms - specs[entity.name].horizon_ms
                event_log.trim(cutoff)
                if label_log is not None:
                    label_log.trim(cutoff)

    request_logs = {}
    for entity in feature_set.entities:
        entity_id = {"customer_id": customer, "terminal_id": terminal}[entity.key]
        if entity_id is not None:
            request_logs[entity.name] = logs[entity.name].get(entity_id, (None, None))
    online = RequestVectors(feature_set).compute("req", request_ms, {"amount": amount},
                                                 request_logs)

    history = [rows[i] for i in stored] + [request_row]
    expected = batch_vector(feature_set, history, label_rows, request_row)
    # Row features read the request's calendar time: the scenario's times are offsets
    # from ORIGIN for the batch engine but epoch ms for the request, so only windows.
    calendar = {feature.name for feature in feature_set.row_features
                if feature.kind is not RowKind.FIELD}
    for name in feature_set.names:
        if name in calendar:
            continue
        assert online[name] == pytest.approx(expected[name], abs=1e-9, rel=0), name


def test_a_boundary_before_the_anchor_is_refused() -> None:
    log = EventLog(sum_fields=("amount",))
    for i in range(5):
        log.add(f"e{i}", i * 1_000, {"amount": 1.0})
    assert log.trim(2_500) == 2          # e2 (at 2000) stays as the anchor
    assert log.count(2_500, 4_000) == 2  # boundaries at or after the cut-off still work
    with pytest.raises(OutOfRange):
        log.count(1_000, 4_000)


def test_running_sums_stay_exact_for_a_huge_lifetime_total() -> None:
    """A plain float running sum would lose the small window under a 1e15 lifetime total."""
    log = EventLog(sum_fields=("amount",))
    log.add("big", 0, {"amount": 1e15})
    for i in range(1, 11):
        log.add(f"e{i}", i, {"amount": 0.1})
    assert log.total("amount", 5, 10) == pytest.approx(0.5, abs=1e-12)


def test_batch_engine_with_no_event_of_an_entity_kind() -> None:
    """No history row has a terminal: the terminal windows are 0, not an IndexError."""
    row = ("t1", ORIGIN, "c0", None, 5.0)
    frame = pd.DataFrame([row], columns=["transaction_id", "event_time", "customer_id",
                                         "terminal_id", "amount"])
    result = compute_features(MIXED, frame, frame, None)
    assert float(result["t_n_3s"].iloc[0]) == 0.0
    assert float(result["c_n_1s"].iloc[0]) == 1.0
