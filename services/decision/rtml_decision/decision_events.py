"""The one place a :class:`~rtml_common.events.Decision` event is built and encoded.

The decision log (and the backtest over it) needs each decision's *inputs*
(features, score, request fields), which ``Decision`` has no field for yet.
Until it has (``inputs: dict[str, float | str | None]``, proposed to the
lead), the inputs travel in a Kafka header of the ``decisions`` record,
:data:`INPUTS_HEADER`, so the event itself stays valid for every consumer.
When the field exists, :func:`build_decision` fills it (detected below) and
:func:`inputs_of` prefers it: the switch needs no other change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from rtml_common.events import Decision, FiredRule, Outcome
from rtml_common.serde import Headers, encode, header_value, headers_for

INPUTS_HEADER = "rtml-decision-inputs"
_HAS_INPUTS_FIELD = "inputs" in Decision.model_fields
_HEADERS = headers_for(Decision)

Inputs = dict[str, float | str | None]


def build_decision(*, transaction_id: str, customer_id: str, event_time: datetime,
                   outcome: Outcome, score: float | None, model_name: str | None,
                   model_version: str | None, rule_set_version: str,
                   fired_rules: Sequence[FiredRule], arm: str | None, degraded: bool,
                   latency_ms: float, decided_at: datetime, inputs: Inputs) -> Decision:
    """The event for one decision (``inputs`` included once the event has the field)."""
    fields: dict[str, Any] = {
        "transaction_id": transaction_id, "customer_id": customer_id,
        "event_time": event_time, "outcome": outcome, "score": score,
        "model_name": model_name, "model_version": model_version,
        "rule_set_version": rule_set_version, "fired_rules": list(fired_rules), "arm": arm,
        "degraded": degraded, "latency_ms": latency_ms, "decided_at": decided_at,
    }
    if _HAS_INPUTS_FIELD:
        fields["inputs"] = inputs
    return Decision(**fields)


def encode_decision(decision: Decision, inputs: Inputs) -> tuple[bytes, Headers]:
    """Record value and headers for the ``decisions`` topic."""
    headers = list(_HEADERS)
    if not _HAS_INPUTS_FIELD:
        headers.append((INPUTS_HEADER, orjson.dumps(inputs)))
    return encode(decision), headers


def inputs_of(decision: Decision, headers: Sequence[tuple[str, bytes | None]]) -> Inputs:
    """The inputs a consumed decision was made with (event field, else header, else {})."""
    field: Mapping[str, Any] | None = getattr(decision, "inputs", None)
    if field:
        return dict(field)
    raw = header_value(headers, INPUTS_HEADER)
    return orjson.loads(raw) if raw else {}
