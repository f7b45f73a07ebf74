"""The one place a :class:`~rtml_common.events.Decision` event is built and encoded.

The decision log (and the backtest over it) needs each decision's *inputs*
(features, score, request fields); they travel in the event's ``inputs``
field, so the ``decisions`` topic alone can rebuild the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rtml_common.events import Decision, FiredRule, Outcome
from rtml_common.serde import Headers, encode, headers_for

_HEADERS = headers_for(Decision)

Inputs = dict[str, float | str | None]


def build_decision(*, transaction_id: str, customer_id: str, event_time: datetime,
                   outcome: Outcome, score: float | None, model_name: str | None,
                   model_version: str | None, rule_set_version: str,
                   fired_rules: Sequence[FiredRule], arm: str | None, degraded: bool,
                   latency_ms: float, decided_at: datetime, inputs: Inputs) -> Decision:
    """The event for one decision."""
    return Decision(
        transaction_id=transaction_id, customer_id=customer_id, event_time=event_time,
        outcome=outcome, score=score, model_name=model_name, model_version=model_version,
        rule_set_version=rule_set_version, fired_rules=list(fired_rules), arm=arm,
        degraded=degraded, latency_ms=latency_ms, decided_at=decided_at, inputs=inputs,
    )


def encode_decision(decision: Decision) -> tuple[bytes, Headers]:
    """Record value and headers for the ``decisions`` topic."""
    return encode(decision), list(_HEADERS)
