"""Writing the prefix logs to Redis: per-entity writer state and one script call per chunk.

The stream sends, per event of an entity, one of: an **append** (the newest
event), a **late insert** (an event older than the newest: it and every later
entry get a new seq, new running sums and new sparse-table levels), a
**label** (a transaction's first label, into the label log and the
labelled-at index) and a **trim** (drop what no request window can reach any
more, keeping the anchor). Layout and member texts: :mod:`.prefix_layout`.

:class:`EntityLogState` is the writer-side state of one entity, meant to be
embedded in the streaming pipeline's per-entity state. It computes every
member text in Python from what it holds, so a write never reads Redis, and
records the *diff* to send (members to remove, members to add);
:class:`PrefixLogWriter` sends the diffs of a batch of entities as one
``EVALSHA`` of :data:`WRITE_SCRIPT` per chunk, every chunk in one pipeline:
one round trip per batch, like :mod:`.bulk_write` (and for the same reason:
per-command packing and reply parsing in redis-py cost ~10 µs of Python each).
On a Redis Cluster an entity's keys carry a hash tag and each entity is its own
call (the entities of a batch are spread over every slot); the cluster client
sends them in one pipeline per node, all nodes in parallel, and the waiter is
a no-op (the write is done when :meth:`PrefixLogWriter.begin` returns).

The script is a generic "apply a sorted-set diff" (``ZREM`` the old members,
``ZADD`` the new, ``EXPIRE``): Redis does no arithmetic and no search, so its
CPU per appended event is one ``ZADD`` member (+ one ``EXPIRE`` per key and
batch), and replaying a diff is harmless (``ZREM`` of an absent member and
``ZADD`` of a present one change nothing).
"""

from __future__ import annotations

import hashlib
import math
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from rtml_features.definitions import FeatureSet
from rtml_features.online_store.base import write_completed
from rtml_features.online_store.redis.connection import Client, cluster_evalsha, is_cluster
from rtml_features.online_store.redis.prefix_layout import (
    FIELD_SEPARATOR,
    PACK_PAIR,
    SEQ_DIGITS,
    event_member,
    known_member,
    label_member,
    log_keys,
)
from rtml_features.prefix_log import Extreme, OutOfRange, dd_add
from rtml_features.request_vector import EntityLogSpec

# The member texts below spell the seq as ``{seq:012x}`` (a constant format is cheaper).
assert SEQ_DIGITS == 12, "prefix_writer formats seqs with 12 hex digits"

#: Arguments per script call (about 1,000 members): bounds how long one call blocks Redis.
CHUNK_ARGS = 2_048
#: Lua's ``unpack`` is limited by its C stack (~8,000 values): ZREM / ZADD in slices.
_SLICE = 4_000

#: Lua statements applying one sorted set's diff to ``key``, read from ``ARGV`` at ``pos``
#: (n, n members to remove — n = -1: delete the key first, none listed —, m, m arguments
#: score, member, ... to add) and moving ``pos`` past it. Also the generic layout's writer's.
APPLY_SORTED_SET_DIFF = f"""
local n = tonumber(ARGV[pos])
if n < 0 then
  redis.call('DEL', key)
  n = 0
end
for s = 0, n - 1, {_SLICE} do
  redis.call('ZREM', key, unpack(ARGV, pos + 1 + s, pos + math.min(s + {_SLICE}, n)))
end
pos = pos + n + 1
n = tonumber(ARGV[pos])
for s = 0, n - 1, {_SLICE} do
  redis.call('ZADD', key, unpack(ARGV, pos + 1 + s, pos + math.min(s + {_SLICE}, n)))
end
pos = pos + n + 1
"""

#: KEYS: sorted sets; ARGV[1] the TTL (s), then per key a diff
#: (:data:`APPLY_SORTED_SET_DIFF`).
WRITE_SCRIPT = f"""
local pos = 2
for i = 1, #KEYS do
  local key = KEYS[i]
  {APPLY_SORTED_SET_DIFF}
  redis.call('EXPIRE', key, ARGV[1])
end
return #KEYS
"""

_PICK = {"min": min, "max": max}


class _Diff:
    """Members to remove from and add to one sorted set since the last send."""

    __slots__ = ("added", "removed", "replace")

    def __init__(self) -> None:
        self.added: dict[bytes, int] = {}
        self.removed: set[bytes] = set()
        #: Delete the key before adding: ``added`` is then the whole set.
        self.replace = False

    def replace_with(self, members: Sequence[bytes], scores: Sequence[int]) -> None:
        """Make the next write set the key to exactly these members."""
        self.replace = True
        self.removed = set()
        self.added = dict(zip(members, scores, strict=True))

    def add(self, member: bytes, score: int) -> None:
        self.added[member] = score

    def remove(self, member: bytes) -> None:
        if self.added.pop(member, None) is None:  # never sent: nothing to remove in Redis
            self.removed.add(member)

    def __bool__(self) -> bool:
        return bool(self.added) or bool(self.removed) or self.replace

    def take(self) -> tuple[list[bytes] | None, list[Any]]:
        """(members to remove, None: delete the key; flat score/member arguments to add).

        Empties the diff."""
        removed = None if self.replace else list(self.removed)
        adds: list[Any] = []
        for member, score in self.added.items():
            adds.append(score)
            adds.append(member)
        self.added, self.removed, self.replace = {}, set(), False
        return removed, adds


class EventLogState:
    """One entity's event log as the writer holds it: the entries since the anchor.

    Holds, per entry in ``(time, id)`` order: time, id, the spec's field
    values, the running double-double sums, the sparse-table levels and the
    member text last sent. Appending reads only the last entry (and, per
    extreme field, the entries ``1, 2, 4, ...`` back) — O(fields + log2 n)
    Python, no Redis read. A late insert rewrites the entries after it (as
    many as arrived after it; each is one ``ZREM`` + one ``ZADD``), which is why
    the state keeps the entries and not just the last one: exactly what the
    pipeline's :class:`~rtml_features.online.EntityState` keeps today (the
    events within the horizon), plus ~100 bytes of member text per event and,
    per extreme field, log2(n) floats per event. Seqs are implicit: entry
    ``i`` has seq ``first_seq + i``.
    """

    __slots__ = ("diff", "extreme_fields", "first_seq", "level_texts", "levels", "members",
                 "sum_fields", "sums_hi", "sums_lo", "tids", "times", "values", "written_s")

    def __init__(self, sum_fields: Sequence[str] = (),
                 extreme_fields: Sequence[tuple[str, Extreme]] = ()) -> None:
        self.sum_fields = tuple(sum_fields)
        self.extreme_fields = tuple(extreme_fields)
        names = dict.fromkeys([*self.sum_fields, *(name for name, _ in self.extreme_fields)])
        self.times: array[int] = array("q")
        self.tids: list[str] = []
        #: field name -> its value per entry.
        self.values: dict[str, array[float]] = {name: array("d") for name in names}
        self.sums_hi = [array("d") for _ in self.sum_fields]
        self.sums_lo = [array("d") for _ in self.sum_fields]
        #: per extreme field, per entry, its sparse-table levels (arrays: unboxed, and
        #: not tracked by the cyclic GC, which a million lists would keep busy).
        self.levels: list[list[array[float]]] = [[] for _ in self.extreme_fields]
        #: the same levels' repr() texts: an appended entry's levels are earlier entries'
        #: values, so their texts are reused instead of formatted again (~0.4 µs each).
        self.level_texts: list[list[tuple[str, ...]]] = [[] for _ in self.extreme_fields]
        self.members: list[bytes] = []
        self.first_seq = 1
        self.diff = _Diff()
        #: When this log's key last had its TTL renewed (``time.monotonic()``).
        self.written_s = time.monotonic()

    def __len__(self) -> int:
        return len(self.times)

    def resend(self) -> None:
        """Make the next write set the key to exactly the state's members.

        For a key that may have expired or been lost, or that a failed write
        left in an unknown state (a delete and the members: idempotent)."""
        self.diff.replace_with(self.members, self.times)

    def add(self, tid: str, time_ms: int, values: Mapping[str, float]) -> bool:
        """Insert an event in ``(time, id)`` order; False if it is already present.

        Raises :class:`~rtml_features.prefix_log.OutOfRange` for an event before
        the anchor of a trimmed log (its running sums are gone).
        """
        times, tids = self.times, self.tids
        n = len(times)
        if not n or time_ms > times[-1] or (time_ms == times[-1] and tid > tids[-1]):
            self._append(tid, time_ms, values)
            return True
        position = bisect_right(times, time_ms)
        while position and times[position - 1] == time_ms and tids[position - 1] >= tid:
            if tids[position - 1] == tid:
                return False
            position -= 1
        if position == 0 and self.first_seq > 1:
            raise OutOfRange(f"event at {time_ms} is before the log's anchor")
        times.insert(position, time_ms)
        tids.insert(position, tid)
        for name, column in self.values.items():
            column.insert(position, float(values[name]))
        for column in (*self.sums_hi, *self.sums_lo):
            column.insert(position, 0.0)
        for per_entry in self.levels:
            per_entry.insert(position, array("d"))
        for per_texts in self.level_texts:
            per_texts.insert(position, ())
        self.members.insert(position, b"")
        for index in range(position, n + 1):
            self._compute(index, rewrite=index != position)
        return True

    def has(self, tid: str, time_ms: int) -> bool:
        """Whether the event ``(time_ms, tid)`` is in the log (a label joins only a known one)."""
        times, tids = self.times, self.tids
        position = bisect_right(times, time_ms)
        while position and times[position - 1] == time_ms:
            if tids[position - 1] == tid:
                return True
            position -= 1
        return False

    def _append(self, tid: str, time_ms: int, values: Mapping[str, float]) -> None:
        """The newest event: :meth:`_compute` for the last entry, inlined (~2x cheaper), with
        straight paths for the common specs (count only; one sum, no extreme).

        In the one-sum path the double-double addition is
        :func:`~rtml_features.prefix_log.dd_add` written out (same operations,
        same results); the member text is :func:`~.prefix_layout.event_member`'s.
        """
        times = self.times
        index = len(times)
        times.append(time_ms)
        self.tids.append(tid)
        if not self.values:  # a count-only log (no sum, no extreme field): the seq says it all
            member = f"{self.first_seq + index:012x}|||{tid}".encode()
            self.members.append(member)
            self.diff.added[member] = time_ms
            return
        for name, column in self.values.items():
            column.append(float(values[name]))
        if len(self.sum_fields) == 1 and not self.extreme_fields:  # one running sum (amounts)
            his, los = self.sums_hi[0], self.sums_lo[0]
            value = self.values[self.sum_fields[0]][index]
            hi, lo = (his[index - 1], los[index - 1]) if index else (0.0, 0.0)
            total = hi + value
            back = total - hi
            error = (hi - (total - back)) + (value - back) + lo
            hi = total + error
            lo = error - (hi - total)
            his.append(hi)
            los.append(lo)
            sums = PACK_PAIR(hi, lo).hex(",", 8)
            member = f"{self.first_seq + index:012x}|{sums}||{tid}".encode()
            self.members.append(member)
            self.diff.added[member] = time_ms
            return
        texts: list[str] = []
        for j, name in enumerate(self.sum_fields):  # the general case: dd_add itself
            his, los = self.sums_hi[j], self.sums_lo[j]
            hi, lo = dd_add(his[index - 1], los[index - 1], self.values[name][index]) if index \
                else dd_add(0.0, 0.0, self.values[name][index])
            his.append(hi)
            los.append(lo)
            texts.append(PACK_PAIR(hi, lo).hex(",", 8))
        sections: list[str] = []
        for j, (name, kind) in enumerate(self.extreme_fields):
            per_entry, per_texts = self.levels[j], self.level_texts[j]
            value = self.values[name][index]
            levels = array("d", (value,))
            shown = [repr(value)]
            larger = kind == "max"
            step = 1
            while index >= step:
                back_levels = per_entry[index - step]
                size = len(levels)
                if len(back_levels) < size:
                    break
                mine, back = levels[-1], back_levels[size - 1]
                # max(mine, back) / min(mine, back): the first argument unless the second wins
                if (back > mine) if larger else (back < mine):
                    levels.append(back)
                    shown.append(per_texts[index - step][size - 1])
                else:
                    levels.append(mine)
                    shown.append(shown[-1])
                step *= 2
            per_entry.append(levels)
            per_texts.append(tuple(shown))
            sections.append(",".join(shown))
        member = (f"{self.first_seq + index:012x}|{','.join(texts)}|"
                  f"{FIELD_SEPARATOR.join(sections)}|{tid}").encode()
        self.members.append(member)
        self.diff.added[member] = time_ms

    def _compute(self, index: int, rewrite: bool) -> None:
        """(Re)compute entry ``index`` from the one before it and record its member.

        A late insert calls this for every entry after it (their seqs move), so
        count-only logs (most terminals' while a catch-up reads partitions days
        apart) take a straight path: their member is the seq and the id."""
        if self.values:
            member = self._computed_member(index)
        else:
            member = f"{self.first_seq + index:012x}|||{self.tids[index]}".encode()
        if rewrite:
            old = self.members[index]
            if old == member:
                return
            self.diff.remove(old)
        self.members[index] = member
        self.diff.add(member, self.times[index])

    def _computed_member(self, index: int) -> bytes:
        """Entry ``index``'s sums and sparse-table levels from the entry before it; its member."""
        sums: list[float] = []
        for j, name in enumerate(self.sum_fields):
            his, los = self.sums_hi[j], self.sums_lo[j]
            hi, lo = (dd_add(his[index - 1], los[index - 1], self.values[name][index]) if index
                      else dd_add(0.0, 0.0, self.values[name][index]))
            his[index], los[index] = hi, lo
            sums.append(hi)
            sums.append(lo)
        levels_out: list[array[float]] = []
        for j, (name, kind) in enumerate(self.extreme_fields):
            per_entry = self.levels[j]
            pick = _PICK[kind]
            levels = array("d", (self.values[name][index],))
            step = 1
            while index - step >= 0:
                back = per_entry[index - step]
                if len(back) < len(levels):
                    break
                levels.append(pick(levels[-1], back[len(levels) - 1]))
                step *= 2
            per_entry[index] = levels
            self.level_texts[j][index] = tuple([repr(level) for level in levels])
            levels_out.append(levels)
        return event_member(self.first_seq + index, sums, levels_out, self.tids[index])

    def trim(self, cutoff_ms: int, slack: int = 0) -> int:
        """Drop the entries before the last one at or before ``cutoff_ms``; how many.

        With ``slack``, nothing is dropped until more than ``slack`` entries can be:
        entries older than needed answer nothing wrong (requests look up floors at or
        after the cut-off), and trimming in steps spares a trim per appended event.
        """
        floor = bisect_right(self.times, cutoff_ms) - 1
        if floor <= slack:
            return 0
        for member in self.members[:floor]:
            self.diff.remove(member)
        del self.times[:floor], self.tids[:floor], self.members[:floor]
        for column in (*self.values.values(), *self.sums_hi, *self.sums_lo):
            del column[:floor]
        for per_entry in self.levels:
            del per_entry[:floor]
        for per_texts in self.level_texts:
            del per_texts[:floor]
        self.first_seq += floor
        return floor


class LabelLogState:
    """One entity's label log as the writer holds it (labelled events, non-zero first label).

    Per entry: event time, id, labelled-at time, label values, running sums,
    the label-log member and the labelled-at index member. Like
    :class:`~rtml_features.prefix_log.LabelLog`, callers add only a
    transaction's *first* label, for a transaction of the entity's event log.
    """

    __slots__ = ("diff", "fields", "first_seq", "known", "known_diff", "labeled_at", "members",
                 "sums_hi", "sums_lo", "tids", "times", "values", "written_s")

    def __init__(self, fields: Sequence[str] = ("is_fraud",)) -> None:
        self.fields = tuple(fields)
        self.times: array[int] = array("q")
        self.tids: list[str] = []
        self.labeled_at: array[int] = array("q")
        self.values = [array("d") for _ in self.fields]
        self.sums_hi = [array("d") for _ in self.fields]
        self.sums_lo = [array("d") for _ in self.fields]
        self.members: list[bytes] = []
        self.known: list[bytes] = []
        self.first_seq = 1
        self.diff = _Diff()
        self.known_diff = _Diff()
        #: When the label keys last had their TTL renewed (``time.monotonic()``).
        self.written_s = time.monotonic()

    def __len__(self) -> int:
        return len(self.times)

    def resend(self) -> None:
        """Make the next write set both label keys to exactly the state's members."""
        self.diff.replace_with(self.members, self.times)
        self.known_diff.replace_with(self.known, self.labeled_at)

    def add(self, tid: str, time_ms: int, labeled_at_ms: int,
            values: Mapping[str, float]) -> bool:
        """Record a first label; False if the transaction already has one here or it is all zero."""
        own = [float(values.get(name, 0.0)) for name in self.fields]
        if not any(own):
            return False
        times, tids = self.times, self.tids
        position = bisect_right(times, time_ms)
        while position and times[position - 1] == time_ms and tids[position - 1] >= tid:
            if tids[position - 1] == tid:
                return False
            position -= 1
        times.insert(position, time_ms)
        tids.insert(position, tid)
        self.labeled_at.insert(position, labeled_at_ms)
        for column, value in zip(self.values, own, strict=True):
            column.insert(position, value)
        for column in (*self.sums_hi, *self.sums_lo):
            column.insert(position, 0.0)
        self.members.insert(position, b"")
        known = known_member(time_ms, own, tid)
        self.known.insert(position, known)
        self.known_diff.add(known, labeled_at_ms)
        for index in range(position, len(times)):
            self._compute(index, rewrite=index != position)
        return True

    def _compute(self, index: int, rewrite: bool) -> None:
        sums: list[float] = []
        for j in range(len(self.fields)):
            his, los, value = self.sums_hi[j], self.sums_lo[j], self.values[j][index]
            hi, lo = (dd_add(his[index - 1], los[index - 1], value) if index
                      else dd_add(0.0, 0.0, value))
            his[index], los[index] = hi, lo
            sums.append(hi)
            sums.append(lo)
        member = label_member(self.first_seq + index, sums, self.tids[index])
        if rewrite:
            if self.members[index] == member:
                return
            self.diff.remove(self.members[index])
        self.members[index] = member
        self.diff.add(member, self.times[index])

    def trim(self, cutoff_ms: int, slack: int = 0) -> int:
        """Drop labels of events before the last one at or before ``cutoff_ms``; how many
        (none until more than ``slack`` can go, as :meth:`EventLogState.trim`)."""
        floor = bisect_right(self.times, cutoff_ms) - 1
        if floor <= slack:
            return 0
        for member in self.members[:floor]:
            self.diff.remove(member)
        for member in self.known[:floor]:
            self.known_diff.remove(member)
        del self.times[:floor], self.tids[:floor], self.labeled_at[:floor]
        del self.members[:floor], self.known[:floor]
        for column in (*self.values, *self.sums_hi, *self.sums_lo):
            del column[:floor]
        self.first_seq += floor
        return floor


class EntityLogState:
    """The writer-side state of one entity: its event log and (if the spec has one) label log.

    What the stream does per event, in the reference's terms: :meth:`add_event`
    (append or late insert), :meth:`add_label`, :meth:`trim`. Each records
    what Redis must change; :class:`PrefixLogWriter` sends it.
    """

    __slots__ = ("events", "labels")

    def __init__(self, spec: EntityLogSpec) -> None:
        self.events = EventLogState(spec.sum_fields, spec.extreme_fields)
        self.labels = LabelLogState(spec.label_fields) if spec.label_fields else None

    def add_event(self, tid: str, time_ms: int, values: Mapping[str, float]) -> bool:
        return self.events.add(tid, time_ms, values)

    def add_label(self, tid: str, time_ms: int, labeled_at_ms: int,
                  values: Mapping[str, float]) -> bool:
        """A first label of the entity's transaction ``(time_ms, tid)``; False if not kept."""
        if self.labels is None:
            return False
        return self.labels.add(tid, time_ms, labeled_at_ms, values)

    def resend(self) -> None:
        """Write every member again with the next write (keys expired or lost)."""
        self.events.resend()
        if self.labels is not None:
            self.labels.resend()

    def clear(self) -> None:
        """Empty both logs, in Redis too once written: before the pipeline drops the state.

        A state must never be dropped while its keys live on: a new state for
        the entity would start again at seq 1 among the old members.
        """
        events, labels = self.events, self.labels
        for member in events.members:
            events.diff.remove(member)
        fresh = EventLogState(events.sum_fields, events.extreme_fields)
        fresh.diff = events.diff
        self.events = fresh
        if labels is not None:
            for member in labels.members:
                labels.diff.remove(member)
            for member in labels.known:
                labels.known_diff.remove(member)
            fresh_labels = LabelLogState(labels.fields)
            fresh_labels.diff, fresh_labels.known_diff = labels.diff, labels.known_diff
            self.labels = fresh_labels

    def trim(self, cutoff_ms: int, slack: int = 0) -> int:
        """Trim both logs at ``cutoff_ms`` (keeping anchors; in steps of more than
        ``slack`` entries, see :meth:`EventLogState.trim`); events dropped.

        The label log's entries are some of the event log's, so it never drops
        anything when the event log drops nothing (0: no change to send).
        """
        if self.labels is not None:
            self.labels.trim(cutoff_ms, slack)
        return self.events.trim(cutoff_ms, slack)

    def snapshot(self) -> dict[str, Any]:
        """The state as plain data (JSON-able: the pipeline's checkpoints are JSON).

        Taken once the pending changes are sent (a checkpoint follows the write's
        waiter): a pending diff is refused rather than lost. Member texts are not
        stored — :meth:`restore` renders them again, identically.
        """
        if any(self.diffs()):
            raise ValueError("snapshot with changes not yet sent to Redis")
        events = self.events
        data: dict[str, Any] = {
            "events": {"first_seq": events.first_seq, "times": events.times.tolist(),
                       "tids": list(events.tids),
                       "values": {name: column.tolist() for name, column in events.values.items()},
                       "sums": [[hi.tolist(), lo.tolist()] for hi, lo in
                                zip(events.sums_hi, events.sums_lo, strict=True)],
                       "levels": [[levels.tolist() for levels in per_entry]
                                  for per_entry in events.levels]}}
        labels = self.labels
        if labels is not None:
            data["labels"] = {
                "first_seq": labels.first_seq, "times": labels.times.tolist(),
                "tids": list(labels.tids), "labeled_at": labels.labeled_at.tolist(),
                "values": [column.tolist() for column in labels.values],
                "sums": [[hi.tolist(), lo.tolist()] for hi, lo in
                         zip(labels.sums_hi, labels.sums_lo, strict=True)]}
        return data

    @classmethod
    def restore(cls, spec: EntityLogSpec, data: Mapping[str, Any]) -> EntityLogState:
        """The state :meth:`snapshot` took, for the same spec, with nothing pending.

        The entity's first write after the restore *replaces* its keys (as
        :meth:`resend`): a crashed run may have written members after the
        checkpoint for intermediate states the replay never passes through
        (another arrival order), which only a replace removes. The replay
        touches every entity the crashed run wrote after the checkpoint, so
        each gets replaced; the others' keys hold what the checkpoint saw.
        """
        state = cls(spec)
        events, saved = state.events, data["events"]
        events.first_seq = saved["first_seq"]
        events.times.extend(saved["times"])
        events.tids.extend(saved["tids"])
        for name, column in events.values.items():
            column.extend(saved["values"][name])
        for j, (hi, lo) in enumerate(saved["sums"]):
            events.sums_hi[j].extend(hi)
            events.sums_lo[j].extend(lo)
        for j, per_entry in enumerate(saved["levels"]):
            events.levels[j].extend(array("d", levels) for levels in per_entry)
            events.level_texts[j].extend(tuple([repr(level) for level in array("d", levels)])
                                         for levels in per_entry)
        for index, tid in enumerate(events.tids):
            sums = [value for j in range(len(events.sum_fields))
                    for value in (events.sums_hi[j][index], events.sums_lo[j][index])]
            events.members.append(event_member(
                events.first_seq + index, sums,
                [per_entry[index] for per_entry in events.levels], tid))
        labels, saved_labels = state.labels, data.get("labels")
        if labels is not None and saved_labels is not None:
            labels.first_seq = saved_labels["first_seq"]
            labels.times.extend(saved_labels["times"])
            labels.tids.extend(saved_labels["tids"])
            labels.labeled_at.extend(saved_labels["labeled_at"])
            for column, saved_column in zip(labels.values, saved_labels["values"], strict=True):
                column.extend(saved_column)
            for j, (hi, lo) in enumerate(saved_labels["sums"]):
                labels.sums_hi[j].extend(hi)
                labels.sums_lo[j].extend(lo)
            for index, tid in enumerate(labels.tids):
                sums = [value for j in range(len(labels.fields))
                        for value in (labels.sums_hi[j][index], labels.sums_lo[j][index])]
                labels.members.append(label_member(labels.first_seq + index, sums, tid))
                labels.known.append(known_member(
                    labels.times[index], [column[index] for column in labels.values], tid))
        # stale for PrefixLogWriter.calls: the first write replaces the keys
        state.events.written_s = -math.inf
        if labels is not None:
            labels.written_s = -math.inf
        return state

    def diffs(self) -> tuple[_Diff, ...]:
        """The pending diffs, in :func:`~.prefix_layout.log_keys` order."""
        if self.labels is None:
            return (self.events.diff,)
        return (self.events.diff, self.labels.diff, self.labels.known_diff)


class PrefixLogWriter:
    """Sends the pending changes of many entities' logs in one round trip."""

    def __init__(self, client: Client, feature_set: FeatureSet, ttl_s: int) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.client = client
        self.feature_set = feature_set
        self.ttl_s = ttl_s
        self.sha = hashlib.sha1(WRITE_SCRIPT.encode()).hexdigest()
        #: A Redis Cluster: tagged keys, one script call per entity (its keys' slot).
        self.cluster = is_cluster(client)
        #: :func:`~.prefix_layout.log_keys` up to the entity name (``...@ev:``).
        events, labels, known = log_keys(feature_set, "", "")
        self._prefixes = events[:-1], labels[:-1], known[:-1]

    def calls(self, states: Sequence[tuple[str, str, EntityLogState]]) -> list[list[Any]]:
        """``EVALSHA`` arguments (after the sha) for every pending change; takes the diffs.

        Written for the common case (one appended event per entity and batch:
        ``0`` removals, one score and member) at ~1 µs an entity.

        TTLs: a key is renewed whenever it changes; a key unchanged for half the
        TTL (the label keys of an entity without new labels, the keys of an
        entity back after a long pause) or not written since a restore is
        replaced with the renewal (:meth:`EventLogState.resend`: a key that
        expired while the state kept its anchor is whole again).
        """
        now = time.monotonic()
        stale = now - self.ttl_s / 2
        calls: list[list[Any]] = []
        keys: list[str] = []
        args: list[Any] = [self.ttl_s]
        append, extend = args.append, args.extend
        events_prefix, labels_prefix, known_prefix = self._prefixes
        cluster = self.cluster
        for entity, entity_id, state in states:
            # (on a cluster, the hash tag of .connection.entity_tag, written out)
            tail = f"{{{entity}:{entity_id}}}" if cluster else f"{entity}:{entity_id}"
            events = state.events
            if events.written_s < stale:
                events.resend()
            diff = events.diff
            if diff.added or diff.removed or diff.replace:
                events.written_s = now
                keys.append(events_prefix + tail)
                added = diff.added
                if diff.replace:
                    diff.replace = False
                    diff.removed = set()
                    append(-1)
                elif diff.removed:
                    append(len(diff.removed))
                    extend(diff.removed)
                    diff.removed = set()
                else:
                    append(0)
                append(2 * len(added))
                for member, score in added.items():
                    append(score)
                    append(member)
                diff.added = {}
            labels = state.labels
            if labels is not None:
                if labels.written_s < stale:
                    labels.resend()
                label_diff, known_diff = labels.diff, labels.known_diff
                if (label_diff.added or label_diff.removed or label_diff.replace
                        or known_diff.added or known_diff.removed or known_diff.replace):
                    labels.written_s = now  # both keys, a diff or not: their TTLs move together
                    for prefix, diff in ((labels_prefix, labels.diff),
                                         (known_prefix, labels.known_diff)):
                        keys.append(prefix + tail)
                        removed_list, adds = diff.take()
                        if removed_list is None:
                            append(-1)
                        else:
                            append(len(removed_list))
                            extend(removed_list)
                        append(len(adds))
                        extend(adds)
            if len(args) >= CHUNK_ARGS or (cluster and keys):
                calls.append([len(keys), *keys, *args])
                keys, args = [], [self.ttl_s]
                append, extend = args.append, args.extend
        if keys:
            calls.append([len(keys), *keys, *args])
        return calls

    def write(self, states: Sequence[tuple[str, str, EntityLogState]]) -> None:
        self.begin(states)()

    def begin(self, states: Sequence[tuple[str, str, EntityLogState]]) -> Callable[[], None]:
        """Send the pending changes of ``states`` (entity, id, state); return the waiter.

        As :meth:`.bulk_write.BulkWriter.begin`: replies are read in the waiter
        (which must be called), NOSCRIPT reloads the script and repeats the
        calls (a diff is idempotent), any other error is raised by the waiter.
        The diffs are taken when sending: if the send or the waiter raises, the
        changes are not known to be in Redis, so the caller must
        :meth:`EntityLogState.resend` those states before their next write.
        """
        calls = self.calls(states)
        if not calls:
            return write_completed
        if self.cluster:  # one call per entity, grouped per node by the cluster client
            assert isinstance(self.client, RedisCluster)
            cluster_evalsha(self.client, WRITE_SCRIPT, self.sha, calls)
            return write_completed
        pool = cast(redis.Redis, self.client).connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command(
                connection.pack_commands([("EVALSHA", self.sha, *args) for args in calls]))
        except BaseException:
            connection.disconnect()
            pool.release(connection)
            raise

        def wait() -> None:
            errors: list[ResponseError] = []
            try:
                for _ in calls:
                    try:
                        connection.read_response()
                    except ResponseError as error:
                        errors.append(error)
            except BaseException:
                connection.disconnect()
                raise
            finally:
                pool.release(connection)
            if errors and all(isinstance(error, NoScriptError) for error in errors):
                self.sha = self.client.script_load(WRITE_SCRIPT)
                pipe = self.client.pipeline(transaction=False)
                for args in calls:
                    pipe.execute_command("EVALSHA", self.sha, *args)
                pipe.execute()
            elif errors:
                raise errors[0]

        return wait
