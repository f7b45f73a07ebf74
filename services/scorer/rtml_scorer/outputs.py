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

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeAlias

import orjson

from rtml_common.events import FeatureVector, ModelRole, Prediction, ShadowScore
from rtml_common.serde import Headers, headers_for
from rtml_common.topics import spec_for_event
from rtml_scorer.decoding import ScoringVector

PREDICTIONS_TOPIC = spec_for_event(Prediction).name
SHADOW_TOPIC = spec_for_event(ShadowScore).name
PREDICTION_HEADERS: Headers = headers_for(Prediction)
SHADOW_HEADERS: Headers = headers_for(ShadowScore)

_CHAMPION = ModelRole.CHAMPION.value
_SHADOW = ModelRole.SHADOW.value


Vector: TypeAlias = FeatureVector | ScoringVector


def prediction_json(vector: Vector, model_name: str, version: str, score: float,
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


def shadow_json(vector: Vector, model_name: str, version: str, score: float,
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


# -- a batch at a time ---------------------------------------------------------
#
# The same bytes as the functions above, built per batch: the first three fields
# depend only on the vector (one orjson call per vector, shared by its champion
# and shadow outputs), the rest only on the model and batch (encoded once), and
# the scores of a batch are encoded by one orjson call. A test checks the bytes
# are identical to ``prediction_json`` / ``shadow_json``.


def output_heads(vectors: Sequence[Vector]) -> list[bytes]:
    """Per vector, the opening of its outputs' JSON objects (up to ``event_time``)."""
    dumps = orjson.dumps
    return [dumps({"transaction_id": v.transaction_id, "customer_id": v.customer_id,
                   "event_time": v.event_time})[:-1] for v in vectors]


def _encode_outputs(heads: Sequence[bytes], scores: list[float], middle: dict[str, Any],
                    tail: dict[str, Any]) -> list[bytes]:
    # b'{"model_name":...,"score":' without the braces, and the fields after the score.
    before = b"," + orjson.dumps(middle)[1:-1] + b',"score":'
    after = b"," + orjson.dumps(tail)[1:]
    if not scores:
        return []
    encoded = orjson.dumps(scores)[1:-1].split(b",")  # numbers never contain a comma
    join = b"".join
    return [join((head, before, score, after)) for head, score in zip(heads, encoded,
                                                                      strict=True)]


def predictions_json(heads: Sequence[bytes], model_name: str, version: str,
                     scores: list[float], latency_ms: float, scored_at: datetime) -> list[bytes]:
    """``Prediction`` values for a batch: ``heads`` from :func:`output_heads`, one per score."""
    return _encode_outputs(heads, scores, {"model_name": model_name, "model_version": version,
                                           "role": _CHAMPION},
                           {"latency_ms": latency_ms, "scored_at": scored_at})


def shadow_scores_json(heads: Sequence[bytes], model_name: str, version: str,
                       scores: list[float], latency_ms: float, scored_at: datetime,
                       champion_version: str | None) -> list[bytes]:
    """``ShadowScore`` values for a batch: ``heads`` from :func:`output_heads`, one per score."""
    return _encode_outputs(heads, scores, {"model_name": model_name, "model_version": version,
                                           "role": _SHADOW},
                           {"latency_ms": latency_ms, "scored_at": scored_at,
                            "champion_version": champion_version})
