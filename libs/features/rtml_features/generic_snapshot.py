"""Checkpoints of a :class:`~rtml_features.stream_generic.GenericStreamingComputer` as plain data.

Plain JSON-able lists and dicts, not pickle (a checkpoint read back from a
shared store must not be able to run code), like :func:`rtml_features.stream.snapshot`.
Each event is written once, however many entity states, lifetime summaries and
label joins refer to it, and referred to by its index; a restored computer then
shares one event object between them again (a label changes it once for all).
The derived indexes (events known as fraud, numeric columns, forgetting and
revision heaps) are rebuilt, not stored.

A restored computer continues exactly as the saved one would have: the same
emissions for the same input (the tests hold them to it).
"""

from __future__ import annotations

import heapq
from typing import Any

from rtml_features.generic_aggregates import NEVER, Folded, Moments, StoredEvent
from rtml_features.stream import Emission
from rtml_features.stream_generic import GenericStreamingComputer, _EntityEvents

SNAPSHOT_FORMAT = 1


def snapshot(computer: GenericStreamingComputer) -> dict[str, Any]:
    """The computer's whole state as JSON-able data."""
    index: dict[int, int] = {}  # id(event) -> position in ``events``
    events: list[list[Any]] = []

    def ref(event: StoredEvent) -> int:
        position = index.get(id(event))
        if position is None:
            position = index[id(event)] = len(events)
            events.append([event.tid, event.time_ms, list(event.ids), event.numbers,
                           event.values, event.rows, event.amount,
                           list(event.label) if event.label is not None else None])
        return position

    states = []
    for (entity, entity_id), state in computer.states.items():
        folded = state.folded
        states.append([entity, entity_id, [ref(event) for event in state.events],
                       None if folded is None else _folded(folded, ref)])
    names = computer.feature_set.names
    return {
        "format": SNAPSHOT_FORMAT,
        "feature_set": computer.feature_set.name,
        "feature_set_version": computer.feature_set.version,
        "watermark_ms": computer.watermark_ms,
        "source_times": dict(computer.source_times),
        "revisions": computer.revisions,
        "last_sweep_ms": computer._last_sweep_ms,
        "known": [ref(event) for event in computer.events.values()],
        "states": states,
        "events": events,
        "pending_labels": [[tid, *label] for tid, label in computer.pending_labels.items()],
        "recent": [[e.transaction_id, list(e.ids), e.time_ms, e.amount, e.revision,
                    [e.vector[name] for name in names]] for e in computer.recent.values()],
    }


def _folded(folded: Folded, ref: Any) -> dict[str, Any]:
    return {"count": folded.count, "first_ms": folded.first_ms,
            "last": ref(folded.last) if folded.last is not None else None,
            "moments": {name: [m.total, m.mean, m.m2, m.low, m.high]
                        for name, m in folded.moments.items()},
            "distinct": {name: sorted(values, key=repr)
                         for name, values in folded.distinct.items()},
            "fraud_at": list(folded.fraud_at)}


def restore(computer: GenericStreamingComputer, data: dict[str, Any]) -> None:
    """Load a :func:`snapshot` into a fresh computer of the same feature set version."""
    if data.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"unsupported snapshot format {data.get('format')!r}")
    if data["feature_set_version"] != computer.feature_set.version:
        raise ValueError(f"snapshot is for feature set version {data['feature_set_version']}, "
                         f"not {computer.feature_set.version}")
    if computer.states or computer.events or computer.recent:
        raise ValueError("restore needs a fresh computer")
    events = []
    for tid, time_ms, ids, numbers, values, rows, amount, label in data["events"]:
        event = StoredEvent(tid, time_ms, tuple(ids), numbers, values, rows, amount)
        if label is not None:
            event.set_label(label[0], label[1])
        events.append(event)
    for position in data["known"]:
        event = events[position]
        computer.events[event.tid] = event
        computer._event_order.append((event.time_ms, event.tid))
    heapq.heapify(computer._event_order)
    for entity, entity_id, members, folded in data["states"]:
        state = _EntityEvents(computer._lifetime[entity], computer._labels[entity],
                              computer._columns[entity])
        for position in members:
            state.insert(events[position])
        if folded is not None:
            state.folded = _restore_folded(folded, events)
        computer.states[(entity, entity_id)] = state
    computer.pending_labels = {tid: (labeled_at, fraud, time_ms)
                               for tid, labeled_at, fraud, time_ms in data["pending_labels"]}
    names = computer.feature_set.names
    for tid, ids, time_ms, amount, revision, values in data["recent"]:
        computer.recent[tid] = Emission(tid, tuple(ids),
                                        time_ms, amount,
                                        dict(zip(names, values, strict=True)), revision)
        computer._recent_order.append((time_ms, tid))
    heapq.heapify(computer._recent_order)
    computer.source_times = dict(data["source_times"])
    computer.watermark_ms = data["watermark_ms"]
    computer.revisions = data["revisions"]
    computer._last_sweep_ms = data["last_sweep_ms"]


def _restore_folded(data: dict[str, Any], events: list[StoredEvent]) -> Folded:
    folded = Folded(count=data["count"], first_ms=data["first_ms"],
                    last=events[data["last"]] if data["last"] is not None else None,
                    fraud_at=list(data["fraud_at"]))
    folded.moments = {name: Moments(*values) for name, values in data["moments"].items()}
    folded.distinct = {name: set(values) for name, values in data["distinct"].items()}
    assert all(at != NEVER for at in folded.fraud_at)
    return folded
