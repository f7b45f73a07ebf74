"""Writing the generic layout (:mod:`.generic_layout`): per-entity state, a script call each.

:class:`GenericOnlineWriter` is what the feature worker calls per applied event
(:meth:`~GenericOnlineWriter.apply_event`) and per label
(:meth:`~GenericOnlineWriter.apply_label`); :meth:`~GenericOnlineWriter.flush`
sends what changed since the last flush: per touched entity one ``EVALSHA`` of
:data:`WRITE_SCRIPT` (remove members, add members, set the kept scalars, renew
every key's TTL), all of them in one pipeline (one per node on a cluster).
Every member text is computed here from the state the writer holds — an
entity's events within its horizon, like the classic
:class:`~.prefix_writer.EventLogState` — so a write never reads Redis.

Idempotent under redelivery: an event already held (same time and id) or a
label no earlier than the one applied changes nothing, and replaying a flush is
harmless (``ZREM`` of an absent member, ``ZADD`` of a present one). An event
older than a trimmed entity's anchor raises nothing but is refused
(:meth:`apply_event` returns False for that entity's part): its running sums
are gone; the writer keeps ``lateness_ms`` of history beyond the windows for
that reason. Labels join their event by id, before or after it; the earliest
``labeled_at`` wins (ties: the first applied).

Not here yet (the worker's part): snapshot / restore of this state for
checkpoints, and a resend of whole keys after Redis lost them.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right, insort
from collections.abc import Mapping, Sequence
from typing import Any

from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from rtml_features.definitions import FeatureSet
from rtml_features.generic_rows import number
from rtml_features.online_store.redis.connection import Client, cluster_evalsha, is_cluster
from rtml_features.online_store.redis.generic_layout import (
    FIXED_KEYS,
    SEQ_DIGITS,
    GenericSpec,
    distinct_text,
    entity_keys,
    generic_spec,
    known_member,
    label_member,
    occurrence_member,
    payload_text,
)
from rtml_features.online_store.redis.prefix_writer import APPLY_SORTED_SET_DIFF
from rtml_features.prefix_log import dd_add
from rtml_features.request_generic import two_prod

_PICK = {"min": min, "max": max}
#: How long after its event a label still reaches a LIFETIME label window (the
#: streaming computer's default label horizon, 60 days).
LABEL_HORIZON_MS = 60 * 86_400_000

#: KEYS: an entity's keys (:func:`~.generic_layout.entity_keys`); ARGV[1] the TTL (s),
#: then per sorted-set key (every key but the meta hash, KEYS[4]): n, n members to
#: remove (n = -1: delete the key first, none listed), m, m arguments (score, member,
#: ...) to add; then for the meta hash: p, p arguments (field, value, ...) to set.
WRITE_SCRIPT = f"""
local pos = 2
for i = 1, #KEYS do
  if i ~= {FIXED_KEYS} then
    local key = KEYS[i]
    {APPLY_SORTED_SET_DIFF}
  end
end
local p = tonumber(ARGV[pos])
if p > 0 then redis.call('HSET', KEYS[{FIXED_KEYS}], unpack(ARGV, pos + 1, pos + p)) end
for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[1]) end
return #KEYS
"""


class ConflictingEvent(ValueError):
    """An event id the writer holds at another event time (not a redelivery)."""


class _Diff:
    """Members to remove from and add to one sorted set (applied: removes, then adds)."""

    __slots__ = ("added", "removed", "replace")

    def __init__(self) -> None:
        self.added: dict[bytes, int] = {}
        self.removed: set[bytes] = set()
        #: Delete the key before adding: ``added`` is then the whole set.
        self.replace = False

    def add(self, member: bytes, score: int) -> None:
        self.added[member] = score
        self.removed.discard(member)

    def remove(self, member: bytes) -> None:
        self.added.pop(member, None)
        if not self.replace:
            self.removed.add(member)

    def replace_with(self, members: dict[bytes, int]) -> None:
        """Make the next write set the key to exactly these members."""
        self.replace, self.removed, self.added = True, set(), dict(members)

    def take(self) -> list[Any]:
        out: list[Any] = ([-1] if self.replace else [len(self.removed), *self.removed])
        out.append(2 * len(self.added))
        for member, score in self.added.items():
            out += [score, member]
        self.added, self.removed, self.replace = {}, set(), False
        return out


def _position(times: Sequence[int], tids: Sequence[str], time_ms: int,
              tid: str) -> tuple[int, bool]:
    """Where ``(time_ms, tid)`` goes in ``(time, id)`` order, and whether it is there."""
    position = bisect_right(times, time_ms)
    while position and times[position - 1] == time_ms and tids[position - 1] >= tid:
        if tids[position - 1] == tid:
            return position - 1, True
        position -= 1
    return position, False


class _EventLog:
    """One entity's event log as the writer holds it: entries since the anchor.

    Per entry: time, id, the numeric and count_distinct values the spec reads, the
    payload (running sums, squares, extremes, own last values), the sparse-table
    levels with their texts (a level is an earlier entry's value: its text is reused,
    not formatted again) and the member last sent.
    """

    def __init__(self, spec: GenericSpec) -> None:
        self.spec = spec
        index = {name: i for i, name in enumerate(spec.numeric_fields)}
        self._sums = [index[name] for name in spec.sum_fields]
        self._squares = [index[name] for name in spec.square_fields]
        self._lifetime = [(index[name], kind == "min") for name, kind in spec.lifetime_extremes]
        self._last = [index[name] for name in spec.last_fields]
        self._extremes = [(index[name], kind == "min") for name, kind in spec.extremes]
        self.times: list[int] = []
        self.tids: list[str] = []
        self.values: list[tuple[float, ...]] = []
        self.distinct: list[tuple[str | None, ...]] = []
        self.payloads: list[tuple[float, ...]] = []
        self.levels: list[list[tuple[list[float], list[str]]]] = []
        self.members: list[bytes] = []
        self.first_seq = 1
        self.diff = _Diff()

    def insert(self, tid: str, time_ms: int, values: tuple[float, ...],
               distinct: tuple[str | None, ...]) -> bool:
        """Insert in ``(time, id)`` order; False if present or before a trimmed anchor."""
        position, present = _position(self.times, self.tids, time_ms, tid)
        if present or (position == 0 and self.first_seq > 1):
            return False
        self.times.insert(position, time_ms)
        self.tids.insert(position, tid)
        self.values.insert(position, values)
        self.distinct.insert(position, distinct)
        self.payloads.insert(position, ())
        self.levels.insert(position, [])
        self.members.insert(position, b"")
        for index in range(position, len(self.times)):
            self._compute(index, rewrite=index != position)
        return True

    def _compute(self, i: int, rewrite: bool) -> None:
        own = self.values[i]
        previous = self.payloads[i - 1] if i else None
        out: list[float] = []
        at = 0
        for j in self._sums:
            out += dd_add(previous[at], previous[at + 1], own[j]) if previous else dd_add(
                0.0, 0.0, own[j])
            at += 2
        for j in self._squares:
            product, error = two_prod(own[j], own[j])
            hi, lo = (previous[at], previous[at + 1]) if previous else (0.0, 0.0)
            hi, lo = dd_add(hi, lo, product)
            out += dd_add(hi, lo, error)
            at += 2
        for j, is_min in self._lifetime:
            value = own[j]
            if previous:
                before = previous[at]
                value = (before if before <= value else value) if is_min else (
                    before if before >= value else value)
            out.append(value)
            at += 1
        out += [own[j] for j in self._last]
        levels: list[tuple[list[float], list[str]]] = []
        sections: list[str] = []
        for f, (j, is_min) in enumerate(self._extremes):
            x = own[j]
            values, texts = [x], [repr(x)]
            k = 1
            while (1 << k) <= i + 1:
                other_values, other_texts = self.levels[i - (1 << (k - 1))][f]
                mine, theirs = values[k - 1], other_values[k - 1]
                if (theirs < mine) if is_min else (theirs > mine):
                    values.append(theirs)
                    texts.append(other_texts[k - 1])
                else:
                    values.append(mine)
                    texts.append(texts[k - 1])
                k += 1
            levels.append((values, texts))
            sections.append(",".join(texts))
        self.payloads[i] = tuple(out)
        self.levels[i] = levels
        member = (f"{self.first_seq + i:0{SEQ_DIGITS}x}|{payload_text(out)}|"
                  f"{'/'.join(sections)}|{self.tids[i]}").encode()
        if rewrite:
            if member == self.members[i]:
                return
            self.diff.remove(self.members[i])
        self.members[i] = member
        self.diff.add(member, self.times[i])

    def trim(self, cutoff_ms: int, slack: int) -> list[tuple[int, str, tuple[str | None, ...]]]:
        """Drop entries before the last one at or before ``cutoff_ms``; what was dropped."""
        floor = bisect_right(self.times, cutoff_ms) - 1
        if floor <= slack:
            return []
        dropped = list(zip(self.times[:floor], self.tids[:floor], self.distinct[:floor],
                           strict=True))
        for member in self.members[:floor]:
            self.diff.remove(member)
        for column in (self.times, self.tids, self.values, self.distinct, self.payloads,
                       self.levels, self.members):
            del column[:floor]
        self.first_seq += floor
        return dropped


class _LabelLog:
    """One entity's label log: events whose first label has a non-zero label field."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = tuple(fields)
        self.times: list[int] = []
        self.tids: list[str] = []
        self.values: list[tuple[float, ...]] = []
        self.labeled_at: list[int] = []
        self.payloads: list[tuple[float, ...]] = []
        self.members: list[bytes] = []
        self.first_seq = 1
        self.diff = _Diff()
        self.known = _Diff()

    def insert(self, tid: str, time_ms: int, labeled_at_ms: int,
               values: tuple[float, ...]) -> bool:
        position, present = _position(self.times, self.tids, time_ms, tid)
        if present or (position == 0 and self.first_seq > 1) or not any(values):
            return False
        self.times.insert(position, time_ms)
        self.tids.insert(position, tid)
        self.values.insert(position, values)
        self.labeled_at.insert(position, labeled_at_ms)
        self.payloads.insert(position, ())
        self.members.insert(position, b"")
        self.known.add(known_member(time_ms, values, tid), labeled_at_ms)
        self._recompute(position, position)
        return True

    def remove(self, tid: str, time_ms: int) -> None:
        position, present = _position(self.times, self.tids, time_ms, tid)
        if not present or (position == 0 and self.first_seq > 1):
            return
        self.diff.remove(self.members[position])
        self.known.remove(known_member(time_ms, self.values[position], tid))
        for column in (self.times, self.tids, self.values, self.labeled_at, self.payloads,
                       self.members):
            del column[position]
        self._recompute(position, -1)

    def _recompute(self, start: int, new: int) -> None:
        for i in range(start, len(self.times)):
            previous = self.payloads[i - 1] if i else None
            out: list[float] = []
            for j, value in enumerate(self.values[i]):
                hi, lo = (previous[2 * j], previous[2 * j + 1]) if previous else (0.0, 0.0)
                out += dd_add(hi, lo, value)
            self.payloads[i] = tuple(out)
            member = label_member(self.first_seq + i, out, self.tids[i])
            if i != new:
                if member == self.members[i]:
                    continue
                self.diff.remove(self.members[i])
            self.members[i] = member
            self.diff.add(member, self.times[i])

    def trim(self, cutoff_ms: int, slack: int) -> None:
        floor = bisect_right(self.times, cutoff_ms) - 1
        if floor <= slack:
            return
        for i in range(floor):
            self.diff.remove(self.members[i])
            self.known.remove(known_member(self.times[i], self.values[i], self.tids[i]))
        for column in (self.times, self.tids, self.values, self.labeled_at, self.payloads,
                       self.members):
            del column[:floor]
        self.first_seq += floor


class _EntityState:
    """Everything the writer holds for one entity, and what changed since the last flush."""

    def __init__(self, spec: GenericSpec) -> None:
        self.spec = spec
        self.events = _EventLog(spec)
        self.labels = _LabelLog(spec.label_fields)
        fields = spec.distinct_fields
        self.occurrences: list[dict[str, list[tuple[int, str]]]] = [{} for _ in fields]
        self.first_seen: list[dict[str, int]] = [{} for _ in fields]
        self.latest_diffs = [_Diff() for _ in fields]
        self.occurrence_diffs = [_Diff() for _ in fields]
        self.first_diffs = [_Diff() for _ in fields]
        self.meta: dict[str, int] = {}
        self.meta_dirty = False
        self.dirty = False

    def add_event(self, tid: str, time_ms: int, values: tuple[float, ...],
                  distinct: tuple[str | None, ...], lateness_ms: int, slack: int,
                  label_horizon_ms: int) -> bool:
        if not self.events.insert(tid, time_ms, values, distinct):
            return False
        self.dirty = True
        if time_ms < self.meta.get("first", time_ms + 1):
            self.meta["first"] = time_ms
            self.meta_dirty = True
        for f, value in enumerate(distinct):
            if value is None:
                continue
            seen = self.occurrences[f].setdefault(value, [])
            insort(seen, (time_ms, tid))
            self.occurrence_diffs[f].add(occurrence_member(value, time_ms, tid), 0)
            if seen[-1] == (time_ms, tid):
                self.latest_diffs[f].add(value.encode(), time_ms)
            if time_ms < self.first_seen[f].get(value, time_ms + 1):
                self.first_seen[f][value] = time_ms
                self.first_diffs[f].add(value.encode(), time_ms)
        cutoff = self.events.times[-1] - self.spec.horizon_ms - lateness_ms
        for old_time, old_tid, old_distinct in self.events.trim(cutoff, slack):
            for f, value in enumerate(old_distinct):
                if value is None:
                    continue
                seen = self.occurrences[f][value]
                seen.remove((old_time, old_tid))
                self.occurrence_diffs[f].remove(occurrence_member(value, old_time, old_tid))
                if not seen:
                    del self.occurrences[f][value]
                    self.latest_diffs[f].remove(value.encode())
        if self.spec.label_fields:
            self.labels.trim(cutoff - label_horizon_ms if self.spec.lifetime_labels else cutoff,
                             slack)
        return True

    def set_label(self, tid: str, time_ms: int, labeled_at_ms: int, values: tuple[float, ...],
                  replaces: bool) -> None:
        if not self.spec.label_fields:
            return
        if replaces:
            self.labels.remove(tid, time_ms)
        if (self.labels.insert(tid, time_ms, labeled_at_ms, values)
                and time_ms < self.meta.get("lfirst", time_ms + 1)):
                self.meta["lfirst"] = time_ms
                self.meta_dirty = True
        self.dirty = True

    def resend(self) -> None:
        """Make the next flush set every key of the entity to exactly what is held here
        (keys that expired, were lost, or that a failed write left in doubt)."""
        events, labels = self.events, self.labels
        events.diff.replace_with(dict(zip(events.members, events.times, strict=True)))
        labels.diff.replace_with(dict(zip(labels.members, labels.times, strict=True)))
        labels.known.replace_with({
            known_member(time_ms, values, tid): at for time_ms, values, tid, at in zip(
                labels.times, labels.values, labels.tids, labels.labeled_at, strict=True)})
        for f in range(len(self.spec.distinct_fields)):
            seen = self.occurrences[f]
            self.latest_diffs[f].replace_with({v.encode(): o[-1][0] for v, o in seen.items()})
            self.occurrence_diffs[f].replace_with({
                occurrence_member(v, time_ms, tid): 0
                for v, o in seen.items() for time_ms, tid in o})
            self.first_diffs[f].replace_with({v.encode(): at
                                              for v, at in self.first_seen[f].items()})
        self.dirty = self.meta_dirty = True

    def arguments(self, ttl_s: int) -> list[Any]:
        """The ARGV of :data:`WRITE_SCRIPT` for what changed; resets the diffs."""
        args: list[Any] = [ttl_s, *self.events.diff.take(), *self.labels.diff.take(),
                           *self.labels.known.take()]
        for f in range(len(self.spec.distinct_fields)):
            args += [*self.latest_diffs[f].take(), *self.occurrence_diffs[f].take(),
                     *self.first_diffs[f].take()]
        pairs: list[Any] = []
        if self.meta_dirty:
            for name, value in self.meta.items():
                pairs += [name, value]
        args += [len(pairs), *pairs]
        self.meta_dirty = self.dirty = False
        return args


class GenericOnlineWriter:
    """Keeps a feature set's generic layout in Redis from applied events and labels.

    ``lateness_ms``: how far behind an entity's newest event an event may still be
    applied (history kept beyond the windows). ``label_horizon_ms``: how long after its
    event a label still reaches a LIFETIME label window (the label logs of such entities,
    and the ids of events, are kept that much longer; labels later than that are lost
    to those windows). ``tagged``: Redis Cluster keys (the client passed to
    :meth:`flush` decides it when None).
    """

    def __init__(self, feature_set: FeatureSet, ttl_s: int, lateness_ms: int = 3_600_000,
                 tagged: bool | None = None, trim_slack: int = 32,
                 label_horizon_ms: int = LABEL_HORIZON_MS) -> None:
        self.feature_set = feature_set
        self.schema = feature_set.schema
        self.ttl_s = ttl_s
        self.lateness_ms = lateness_ms
        self.tagged = tagged
        self.trim_slack = trim_slack
        self.label_horizon_ms = label_horizon_ms
        self.specs = {e.name: generic_spec(feature_set, e) for e in feature_set.entities}
        self._defaults = {name: (self.schema.field(name).default if self.schema.has(name)
                                 else None)
                          for spec in self.specs.values() for name in spec.numeric_fields}
        self._keep_ms = max((s.horizon_ms for s in self.specs.values()), default=0) + lateness_ms
        if any(s.lifetime_labels for s in self.specs.values()):
            self._keep_ms += label_horizon_ms
        self.states: dict[tuple[str, str], _EntityState] = {}
        #: id -> (event time, entity ids) of the events held (labels join them).
        self._events: dict[str, tuple[int, dict[str, str]]] = {}
        #: id -> (labeled_at, label values) of the first label per transaction.
        self._labels: dict[str, tuple[int, dict[str, float]]] = {}
        self._label_fields = sorted({f for s in self.specs.values() for f in s.label_fields})
        self._newest = 0
        self._pruned_at = 0
        self.sha = hashlib.sha1(WRITE_SCRIPT.encode()).hexdigest()

    def _state(self, entity: str, entity_id: str) -> _EntityState:
        state = self.states.get((entity, entity_id))
        if state is None:
            state = self.states[entity, entity_id] = _EntityState(self.specs[entity])
        return state

    def apply_event(self, event: Mapping[str, Any]) -> bool:
        """Apply one event of the set's schema (time as epoch ms); False if nothing changed
        (a redelivery, or an event older than what its entities keep).

        Raises :class:`~rtml_features.generic_rows.InvalidEvent` for a numeric field it
        cannot read, and :class:`ConflictingEvent` for an id already held at another
        time, both before any change.
        """
        tid = str(event[self.schema.id_field])
        time_ms = int(event[self.schema.event_time])
        held = self._events.get(tid)
        if held is not None:
            if held[0] != time_ms:
                raise ConflictingEvent(f"event {tid!r} at {time_ms} is held at {held[0]}")
            return False
        parts: list[tuple[str, GenericSpec, str, tuple[float, ...], tuple[str | None, ...]]] = []
        for name, spec in self.specs.items():
            entity_id = spec.entity.id_of(event)
            if entity_id is None:
                continue
            values = tuple(number(event.get(f), f, self._defaults[f])
                           for f in spec.numeric_fields)
            distinct = tuple(distinct_text(event.get(f)) for f in spec.distinct_fields)
            parts.append((name, spec, entity_id, values, distinct))
        changed = False
        ids: dict[str, str] = {}
        for name, spec, entity_id, values, distinct in parts:
            ids[name] = entity_id
            state = self._state(name, entity_id)
            if state.add_event(tid, time_ms, values, distinct, self.lateness_ms,
                               self.trim_slack, self.label_horizon_ms):
                changed = True
                label = self._labels.get(tid)
                if label is not None:
                    state.set_label(tid, time_ms, label[0],
                                    tuple(label[1][f] for f in spec.label_fields),
                                    replaces=False)
        if changed:
            self._events[tid] = (time_ms, ids)
            self._newest = max(self._newest, time_ms)
        return changed

    def apply_label(self, transaction_id: str, labeled_at_ms: int,
                    values: Mapping[str, Any]) -> bool:
        """Apply a label (``values``: label field -> value); False if an earlier one holds."""
        own = {f: 1.0 if values.get(f) is True else float(values.get(f) or 0.0)
               for f in self._label_fields}
        known = self._labels.get(transaction_id)
        if known is not None and known[0] <= labeled_at_ms:
            return False
        self._labels[transaction_id] = (labeled_at_ms, own)
        held = self._events.get(transaction_id)
        if held is not None:
            time_ms, ids = held
            for name, entity_id in ids.items():
                state = self.states.get((name, entity_id))
                if state is not None:
                    state.set_label(transaction_id, time_ms, labeled_at_ms,
                                    tuple(own[f] for f in state.spec.label_fields),
                                    replaces=known is not None)
        return True

    def resend(self) -> None:
        """Make the next :meth:`flush` rewrite every held entity's keys whole (after Redis
        lost data: a restart without persistence, a failover losing writes)."""
        for state in self.states.values():
            state.resend()

    def _prune(self) -> None:
        """Forget ids (and labels) of events no entity can hold any more."""
        if len(self._events) < 2 * self._pruned_at + 1_024:
            return
        cutoff = self._newest - self._keep_ms
        for tid in [t for t, (time_ms, _) in self._events.items() if time_ms < cutoff]:
            del self._events[tid]
            self._labels.pop(tid, None)
        # a label still waiting for its event: that event (no later than the label) could
        # not be applied any more
        for tid in [t for t, (at, _) in self._labels.items()
                    if at < cutoff and t not in self._events]:
            del self._labels[tid]
        self._pruned_at = len(self._events)

    def commands(self, tagged: bool = False) -> list[list[Any]]:
        """``EVALSHA`` arguments (after the sha) of :data:`WRITE_SCRIPT` per changed entity."""
        calls: list[list[Any]] = []
        for (_, entity_id), state in self.states.items():
            if not state.dirty and not state.meta_dirty:
                continue
            keys = entity_keys(self.feature_set, state.spec, entity_id, tagged)
            calls.append([len(keys), *keys, *state.arguments(self.ttl_s)])
        self._prune()
        return calls

    def flush(self, client: Client) -> int:
        """Send every change since the last flush in one pipeline; the script calls sent."""
        cluster = is_cluster(client) if self.tagged is None else self.tagged
        calls = self.commands(tagged=cluster)
        if not calls:
            return 0
        if isinstance(client, RedisCluster):
            cluster_evalsha(client, WRITE_SCRIPT, self.sha, calls)
            return len(calls)
        for attempt in range(2):
            pipe = client.pipeline(transaction=False)
            for call in calls:
                pipe.evalsha(self.sha, *call)
            replies = pipe.execute(raise_on_error=False)
            if not any(isinstance(r, NoScriptError) for r in replies):
                break
            if attempt:
                raise replies[0]
            client.script_load(WRITE_SCRIPT)  # replays are harmless: the script is idempotent
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return len(calls)


__all__ = ["WRITE_SCRIPT", "ConflictingEvent", "GenericOnlineWriter"]
