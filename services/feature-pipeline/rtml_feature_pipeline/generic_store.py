"""The generic online layout as the worker writes it: delivery, checkpoints, lost Redis.

:class:`GenericStore` wraps a
:class:`~rtml_features.online_store.redis.generic_writer.GenericOnlineWriter` (what a
non-classic feature set's request-time vectors are read from) with what the worker
needs of it beyond apply / flush:

* :meth:`GenericStore.pending`: whether a flush has anything to send (the worker
  checkpoints only after delivering everything);
* a failed :meth:`GenericStore.flush` (Redis unavailable mid-pipeline) leaves the keys
  of the entities it was sending in an unknown state, and the writer has already taken
  their diffs: those entities are marked to be rewritten whole by the next flush;
* :meth:`GenericStore.snapshot` / :meth:`GenericStore.restore`: the writer's whole state
  as plain JSON-able data in the worker's checkpoint, so a restarted worker holds exactly
  what the crashed one held at the checkpoint's offsets and the replayed tail is applied
  on top of it (redelivered events are no-ops, re-sent members are identical);
* :meth:`GenericStore.resend`: every held entity rewritten whole (Redis restarted empty);
* every entity's first write in this process replaces its keys whole (``DEL`` first):
  a crashed run wrote members after its checkpoint that the replay of that tail need
  not write again — the writer's state depends on the order events arrive in (when a
  log is trimmed, hence its sequence numbers and running sums), and partitions
  interleave differently on replay — and a stale member left beside the replay's would
  be read as one more event. Once per entity, so about one resend of the state.

The snapshot keeps what cannot be recomputed after a trim (the running sums, squares
and sparse-table levels carry the dropped entries), so it is stored, not rebuilt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rtml_features.online_store.redis.connection import Client
from rtml_features.online_store.redis.generic_writer import GenericOnlineWriter

SNAPSHOT_FORMAT = 1


class GenericStore:
    """A :class:`GenericOnlineWriter` with the worker's delivery and checkpoint calls."""

    def __init__(self, writer: GenericOnlineWriter) -> None:
        self.writer = writer
        #: Entities written whole since this process started (see the module docstring).
        self._replaced: set[tuple[str, str]] = set()

    def apply_event(self, event: Mapping[str, Any]) -> bool:
        return self.writer.apply_event(event)

    def apply_label(self, transaction_id: str, labeled_at_ms: int,
                    values: Mapping[str, Any]) -> bool:
        return self.writer.apply_label(transaction_id, labeled_at_ms, values)

    def pending(self) -> bool:
        """Whether the next flush sends anything."""
        return any(s.dirty or s.meta_dirty for s in self.writer.states.values())

    def flush(self, client: Client) -> int:
        """Send the changes; on any failure the entities being sent are rewritten whole
        by the next flush (their diffs were taken, their keys may be half-written)."""
        sending = []
        replaced = self._replaced
        for key, state in self.writer.states.items():
            if state.dirty or state.meta_dirty:
                if key not in replaced:
                    state.resend()
                    replaced.add(key)
                sending.append(state)
        try:
            return self.writer.flush(client)
        except BaseException:
            for state in sending:
                state.resend()
            raise

    def resend(self) -> None:
        """Rewrite every held entity's keys whole at the next flush."""
        self.writer.resend()

    def entities(self) -> int:
        return len(self.writer.states)

    # -- checkpoints -----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The writer's whole state (nothing may be pending: deliver first)."""
        if self.pending():
            raise ValueError("the generic online layout has unsent changes: flush before "
                             "taking its snapshot")
        w = self.writer
        states = []
        for (entity, entity_id), s in w.states.items():
            ev, lb = s.events, s.labels
            states.append({
                "entity": entity, "id": entity_id,
                "events": [ev.first_seq, ev.times, ev.tids, ev.values, ev.distinct, ev.payloads,
                           [[values for values, _ in levels] for levels in ev.levels],
                           [m.decode() for m in ev.members]],
                "labels": [lb.first_seq, lb.times, lb.tids, lb.values, lb.labeled_at,
                           lb.payloads, [m.decode() for m in lb.members]],
                "occurrences": [{v: [list(o) for o in seen] for v, seen in field.items()}
                                for field in s.occurrences],
                "first_seen": [dict(field) for field in s.first_seen],
                "meta": dict(s.meta),
            })
        return {
            "format": SNAPSHOT_FORMAT,
            "feature_set": w.feature_set.name,
            "feature_set_version": w.feature_set.version,
            "states": states,
            "events": [[tid, time_ms, ids] for tid, (time_ms, ids) in w._events.items()],
            "labels": [[tid, at, values] for tid, (at, values) in w._labels.items()],
            "newest": w._newest,
            "pruned_at": w._pruned_at,
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Load a :meth:`snapshot` into this store's fresh writer (same set version)."""
        if data.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"unsupported generic layout snapshot format {data.get('format')!r}")
        w = self.writer
        if data["feature_set_version"] != w.feature_set.version:
            raise ValueError(f"generic layout snapshot is for feature set version "
                             f"{data['feature_set_version']}, not {w.feature_set.version}")
        w.states.clear()
        for item in data["states"]:
            s = w._state(item["entity"], item["id"])
            ev, lb = s.events, s.labels
            (ev.first_seq, times, tids, values, distinct, payloads, levels,
             members) = item["events"]
            ev.times, ev.tids = list(times), list(tids)
            ev.values = [tuple(v) for v in values]
            ev.distinct = [tuple(d) for d in distinct]
            ev.payloads = [tuple(p) for p in payloads]
            ev.levels = [[(list(vals), [repr(x) for x in vals]) for vals in entry]
                         for entry in levels]
            ev.members = [m.encode() for m in members]
            (lb.first_seq, times, tids, values, labeled_at, payloads, members) = item["labels"]
            lb.times, lb.tids, lb.labeled_at = list(times), list(tids), list(labeled_at)
            lb.values = [tuple(v) for v in values]
            lb.payloads = [tuple(p) for p in payloads]
            lb.members = [m.encode() for m in members]
            s.occurrences = [{v: [(o[0], o[1]) for o in seen] for v, seen in field.items()}
                             for field in item["occurrences"]]
            s.first_seen = [dict(field) for field in item["first_seen"]]
            s.meta = dict(item["meta"])
            s.dirty = s.meta_dirty = False
        w._events = {tid: (time_ms, dict(ids)) for tid, time_ms, ids in data["events"]}
        w._labels = {tid: (at, dict(values)) for tid, at, values in data["labels"]}
        w._newest = data["newest"]
        w._pruned_at = data["pruned_at"]


__all__ = ["GenericStore"]
