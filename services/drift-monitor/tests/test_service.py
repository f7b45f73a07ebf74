"""The service end to end on a real broker and MLflow: champion reference -> alerts -> retrain.

A champion is registered with ``reference/distributions.json`` in its run
(where training logs it). Feature vectors and champion scores are produced
for four one-hour windows: the first is partial (the stream starts in it),
the second matches the reference, the third drifts (amounts x3, scores
+0.35), the fourth only moves event time on so the third closes. A
malformed record and re-published vectors ride along.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from rtml_common.events import DriftAlert, FeatureVector, Prediction, RetrainRequest, utcnow
from rtml_common.serde import decode
from rtml_features.baseline import BASELINE
from rtml_monitoring.reference import build_reference

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)
CUSTOMERS = [f"c{k}" for k in range(40)]  # enough keys for every partition


def traffic(deployment: Any, version: str, hour: int, rows: int, seed: int,
            amount_scale: float = 1.0, score_shift: float = 0.0,
            revision: int = 0) -> list[Any]:
    frame = deployment.synthetic_frame(rows, seed, amount_scale)
    scores = deployment.synthetic_scores(rows, seed + 1, score_shift)
    events: list[Any] = []
    for i in range(rows):
        when = deployment.t0 + hour * HOUR + (i + 0.5) * HOUR / rows
        customer = CUSTOMERS[i % len(CUSTOMERS)]
        tx = f"tx-{hour}-{i}"
        values = {name: float(frame[name].iloc[i]) for name in deployment.names}
        events.append(FeatureVector(
            transaction_id=tx, customer_id=customer, event_time=when,
            amount=values["tx_amount"], feature_set=BASELINE.name,
            feature_set_version=BASELINE.version, features=values, revision=revision,
            computed_at=utcnow()))
        if revision == 0:
            events.append(Prediction(
                transaction_id=tx, customer_id=customer, event_time=when,
                model_name=deployment.name, model_version=version,
                score=float(scores[i]), latency_ms=1.0, scored_at=utcnow()))
    return events


def test_drift_raises_an_alert_and_a_retrain_request_and_bad_records_are_dead_lettered(
        deployment: Any) -> None:
    reference = build_reference(deployment.synthetic_frame(20_000, 1), deployment.names,
                                deployment.synthetic_scores(20_000, 2),
                                feature_set=BASELINE.name, feature_set_version=BASELINE.version)
    version = deployment.register_champion(reference)
    running = deployment.start(threading.Event(), window_s=3600, sliding_window_s=0,
                               allowed_lateness_s=0, min_window_events=100)
    deployment.produce(traffic(deployment, version, 0, 150, seed=10))
    deployment.produce(traffic(deployment, version, 1, 400, seed=20))
    deployment.produce(traffic(deployment, version, 2, 400, seed=30, amount_scale=3.0,
                               score_shift=0.35))
    # Re-publications of hour-2 transactions with unshifted values: must not dilute the drift.
    deployment.produce(traffic(deployment, version, 2, 300, seed=30, revision=1))
    deployment.produce_raw("features", b"c1", b'{"transaction_id": "broken"')
    deployment.produce(traffic(deployment, version, 3, len(CUSTOMERS), seed=40))

    alerts = [decode(r.value, DriftAlert) for r in deployment.consume("drift-alerts", 2)]
    requests = [decode(r.value, RetrainRequest)
                for r in deployment.consume("retrain-requests", 1)]
    dead = deployment.consume("features.dlq", 1)

    assert {a.subject for a in alerts} == {"tx_amount", "score"}
    for alert in alerts:
        assert alert.window_start == deployment.t0 + 2 * HOUR  # the first drifting window
        assert alert.window_end == deployment.t0 + 3 * HOUR
        assert alert.model_name == deployment.name and alert.model_version == version
        assert alert.value > alert.threshold == 0.2
    (request,) = requests
    assert request.model_name == deployment.name
    assert request.alert_ids and set(request.alert_ids) <= {a.alert_id for a in alerts}
    assert request.data_end == deployment.t0 + 3 * HOUR
    assert request.data_end - request.data_start == timedelta(days=21)
    assert dead[0].value == b'{"transaction_id": "broken"'  # the original bytes, kept
    headers = dict(dead[0].headers)
    assert headers["rtml-dlq-source-topic"] == b"features"
    assert b"DecodeError" in (headers["rtml-dlq-error-type"] or b"")

    # The champion moves: the watcher loads the new version's reference.
    monitor = running.monitor
    assert monitor is not None
    second = deployment.register_champion(reference, seed=1)
    deployment.produce([deployment.model_event(second)])
    deadline = utcnow() + timedelta(seconds=30)
    while monitor.version != second and utcnow() < deadline:
        threading.Event().wait(0.1)
    assert monitor.version == second
    result = running.finish()
    assert result.alerts == 2 and result.retrain_requests == 1
    assert result.reference_version == second
    assert result.events["features:revision"] == 300
    assert result.events["features:windowed"] == 150 + 400 + 400 + len(CUSTOMERS)
    assert result.loop.dead_lettered == 1
