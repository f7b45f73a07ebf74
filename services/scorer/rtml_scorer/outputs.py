"""Encoding ``predictions`` and ``shadow-scores`` records without building pydantic models.

At tens of thousands of events per second, each with a champion score and
up to a few shadow scores, constructing a :class:`~rtml_common.events.Prediction`
and dumping it would cost more than the scoring itself. These functions
write the same JSON (field for field; a test checks it decodes as the event)
from a plain dict with orjson, and the scorer only calls them with values it
has already checked (finite scores in [0, 1], non-negative latencies).

Latency semantics (``latency_ms``): the model's compute time for the row —
for a micro-batch the batch's ``predict`` time divided by its rows (the
per-row share), for a single-row batch the measured ``predict_one`` time.
It excludes queueing, decoding and publishing (see docs/scorer.md).
"""

from __future__ import annotations

from datetime import datetime

import orjson

from rtml_common.events import FeatureVector, ModelRole, Prediction, ShadowScore
from rtml_common.serde import Headers, headers_for
from rtml_common.topics import spec_for_event

PREDICTIONS_TOPIC = spec_for_event(Prediction).name
SHADOW_TOPIC = spec_for_event(ShadowScore).name
PREDICTION_HEADERS: Headers = headers_for(Prediction)
SHADOW_HEADERS: Headers = headers_for(ShadowScore)

_CHAMPION = ModelRole.CHAMPION.value
_SHADOW = ModelRole.SHADOW.value


def prediction_json(vector: FeatureVector, model_name: str, version: str, score: float,
                    latency_ms: float, scored_at: datetime) -> bytes:
    """A ``Prediction`` event's JSON value."""
    return orjson.dumps({
        "transaction_id": vector.transaction_id,
        "customer_id": vector.customer_id,
        "event_time": vector.event_time,
        "model_name": model_name,
        "model_version": version,
        "role": _CHAMPION,
        "score": score,
        "latency_ms": latency_ms,
        "scored_at": scored_at,
    })


def shadow_json(vector: FeatureVector, model_name: str, version: str, score: float,
                latency_ms: float, scored_at: datetime, champion_version: str | None) -> bytes:
    """A ``ShadowScore`` event's JSON value."""
    return orjson.dumps({
        "transaction_id": vector.transaction_id,
        "customer_id": vector.customer_id,
        "event_time": vector.event_time,
        "model_name": model_name,
        "model_version": version,
        "role": _SHADOW,
        "score": score,
        "latency_ms": latency_ms,
        "scored_at": scored_at,
        "champion_version": champion_version,
    })
