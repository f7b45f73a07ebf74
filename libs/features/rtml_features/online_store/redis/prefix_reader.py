"""Reading a request's window boundaries from the Redis prefix logs in one round trip.

A request at ``t`` needs, per entity, the floor entry of each window boundary
(``t - n - d`` and ``t - d`` of every aggregate), for each min / max window the
one sparse-table level of two members (the window's last entry and the entry
``2**k`` after its lower floor, found by rank), whether its own transaction is
already in the log at score ``t``, and from the label log the floors of the
label-delayed windows' boundaries plus the labels known only after ``t``. One
Lua script (:data:`READ_SCRIPT`) finds them all server side — each floor is a
``ZRANGE ... BYSCORE REV LIMIT 0 1``, each rank a ``ZRANK``: O(log n) — and
returns only what was asked: a member's head ``SEQ|SUMS`` per boundary and one
level text per extreme, so the reply's size does not grow with the entity's
activity (see :mod:`.prefix_layout`). :class:`EventLogView` and
:class:`LabelLogView` answer, from those, exactly the calls
:class:`~rtml_features.request_vector.RequestVectors` makes (the
:mod:`rtml_features.log_query` protocols).

**Composing with the decision API's script.** :data:`READ_ENTITY_LUA` defines
``rtml_read_entities(first_key, first_arg)`` (and its helpers) without
running anything: a script that also claims the idempotency record is that
text followed by its own body, e.g.::

    READ_ENTITY_LUA + '''
    local stored = redis.call('GET', KEYS[1])
    if stored then return {stored} end
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return {false, rtml_read_entities(2, 3)}
    '''

with ``KEYS = [decision key, *keys]`` and ``ARGV = [marker, ttl, *args]``
where ``keys, args, asked = reader.request(...)`` and the reply's second
element goes to :meth:`PrefixLogReader.views`. Per entity the script takes
:data:`ENTITY_KEYS` keys (:func:`~.prefix_layout.log_keys` order) and the
argument segment :meth:`PrefixLogReader.entity_args` builds::

    nb, b_1..b_nb,                      event-log boundaries (ms)
    nq, (field, ia, iu) * nq,           extremes: 1-based extreme field of the spec,
                                        indexes of its after / until boundaries
    has_time | "", has_tid,             the request's own event ("" = not asked)
    nl, l_1..l_nl, known_by             label-log boundaries, the request's time

and answers ``{events, labels}``: ``events`` false when the log does not
exist, else ``{heads, extremes, has}`` (a head is ``""`` for "no entry at or
before it", ``"!"`` when the log was trimmed past it; two level texts per
extreme query, ``""`` for an empty window); ``labels`` false when not asked or
absent, else ``{heads, known}`` with the labelled-at members scored after
``known_by`` whose event lies in the span of the label windows.

Cost per request and entity: two floor searches per distinct boundary, one
``ZRANK`` + one ``ZRANGE`` per min / max window, one ``ZRANGE`` of the events at
exactly ``t`` (simultaneous events: a handful) and the labels known after ``t``
(none for a live request, whose store holds only labels known before it; a
request replayed long after its time scans the entity's labels known since,
and gets back those of its windows) — all O(log n) for a live request.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from rtml_features.definitions import Agg, Entity, FeatureSet
from rtml_features.log_query import EventLogQuery, LabelLogQuery
from rtml_features.online_store.redis.connection import Client, cluster_evalsha, is_cluster
from rtml_features.online_store.redis.prefix_layout import (
    SEQ_DIGITS,
    log_keys,
    parse_head,
    parse_known,
)
from rtml_features.prefix_log import Extreme, OutOfRange, dd_difference
from rtml_features.request_vector import EntityLogSpec, duration_ms, log_spec

#: Keys per entity in the script's KEYS: event log, label log, labelled-at index.
ENTITY_KEYS = 3

READ_ENTITY_LUA = f"""
local function rtml_seq(member)
  return tonumber(string.sub(member, 1, {SEQ_DIGITS}), 16)
end
local function rtml_floor(key, at)
  local member = redis.call('ZRANGE', key, at, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, 1)[1]
  if member then
    local p1 = string.find(member, '|', 1, true)
    return member, string.sub(member, 1, string.find(member, '|', p1 + 1, true) - 1)
  end
  local first = redis.call('ZRANGE', key, 0, 0)[1]
  if first and rtml_seq(first) > 1 then return false, '!' end
  return false, ''
end
local function rtml_level(member, field, level)
  local p1 = string.find(member, '|', 1, true)
  local p2 = string.find(member, '|', p1 + 1, true)
  local p3 = string.find(member, '|', p2 + 1, true)
  local f = 0
  for section in string.gmatch(string.sub(member, p2 + 1, p3 - 1), '[^/]+') do
    f = f + 1
    if f == field then
      local k = 0
      for text in string.gmatch(section, '[^,]+') do
        if k == level then return text end
        k = k + 1
      end
    end
  end
  return error('rtml: no level ' .. level .. ' of extreme field ' .. field)
end
local function rtml_tid(member)
  local p = 0
  for _ = 1, 3 do p = string.find(member, '|', p + 1, true) end
  return string.sub(member, p + 1)
end
local function rtml_read_entity(ev, lb, lk, argv, pos)
  local nb = tonumber(argv[pos])
  local bounds = pos + 1
  local q0 = bounds + nb
  local nq = tonumber(argv[q0])
  local h0 = q0 + 1 + 3 * nq
  local has_time, has_tid = argv[h0], argv[h0 + 1]
  local nl = tonumber(argv[h0 + 2])
  local known_by = argv[h0 + 3 + nl]
  local events = false
  if redis.call('EXISTS', ev) == 1 then
    local members, heads, seqs, ranks = {{}}, {{}}, {{}}, {{}}
    for b = 1, nb do
      members[b], heads[b] = rtml_floor(ev, argv[bounds + b - 1])
      seqs[b] = members[b] and rtml_seq(members[b]) or 0
    end
    local extremes = {{}}
    for q = 0, nq - 1 do
      local field = tonumber(argv[q0 + 1 + 3 * q])
      local a, u = tonumber(argv[q0 + 2 + 3 * q]), tonumber(argv[q0 + 3 + 3 * q])
      local size = seqs[u] - seqs[a]
      if heads[a] == '!' or heads[u] == '!' or size <= 0 then
        extremes[2 * q + 1], extremes[2 * q + 2] = '', ''
      else
        local level, span = 0, 1
        while span * 2 <= size do span, level = span * 2, level + 1 end
        if not ranks[u] then ranks[u] = redis.call('ZRANK', ev, members[u]) end
        local at = ranks[u] - size + span
        local other = redis.call('ZRANGE', ev, at, at)[1]
        extremes[2 * q + 1] = rtml_level(members[u], field, level)
        extremes[2 * q + 2] = rtml_level(other, field, level)
      end
    end
    local has = 0
    if has_time ~= '' then
      for _, member in ipairs(redis.call('ZRANGE', ev, has_time, has_time, 'BYSCORE')) do
        if rtml_tid(member) == has_tid then has = 1 break end
      end
    end
    events = {{heads, extremes, has}}
  end
  local labels = false
  if nl > 0 and redis.call('EXISTS', lb) == 1 then
    local heads, low, high = {{}}, math.huge, -math.huge
    for b = 1, nl do
      local bound = argv[h0 + 2 + b]
      local _, head = rtml_floor(lb, bound)
      heads[b] = head
      low, high = math.min(low, tonumber(bound)), math.max(high, tonumber(bound))
    end
    local later = {{}}  -- labels known after the request, of events in the windows' span
    for _, member in ipairs(redis.call('ZRANGE', lk, '(' .. known_by, '+inf', 'BYSCORE')) do
      local time = tonumber(string.sub(member, 1, string.find(member, '|', 1, true) - 1))
      if time > low and time <= high then later[#later + 1] = member end
    end
    labels = {{heads, later}}
  end
  return {{events, labels}}, h0 + 4 + nl
end
local function rtml_read_entities(first_key, first_arg)
  local out, pos = {{}}, first_arg
  for k = first_key, #KEYS, {ENTITY_KEYS} do
    out[#out + 1], pos = rtml_read_entity(KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV, pos)
  end
  return out
end
"""

#: KEYS: :data:`ENTITY_KEYS` per entity; ARGV: the entities' segments, in the same order.
READ_SCRIPT = READ_ENTITY_LUA + "return rtml_read_entities(1, 1)\n"

_OUT = b"!"


@dataclass(frozen=True)
class EntityReadPlan:
    """What a request reads of one entity's logs, from the feature set's definitions."""

    entity: Entity
    spec: EntityLogSpec
    #: (window, delay) ms of every aggregate over the entity (all count events).
    event_windows: tuple[tuple[int, int], ...]
    #: (1-based extreme field index in the spec, field, kind, window, delay).
    extremes: tuple[tuple[int, str, Extreme, int, int], ...]
    #: (window, delay) of the label-delayed aggregates over label fields.
    label_windows: tuple[tuple[int, int], ...]
    #: Whether an aggregate without delay asks if the request is already in the log.
    asks_has: bool

    @classmethod
    def of(cls, feature_set: FeatureSet, entity: Entity) -> EntityReadPlan:
        spec = log_spec(feature_set, entity)
        windows: dict[tuple[int, int], None] = {}
        extremes: dict[tuple[int, str, Extreme, int, int], None] = {}
        labels: dict[tuple[int, int], None] = {}
        asks_has = False
        for aggregate in feature_set.window_aggregates:
            if aggregate.entity != entity:
                continue
            window = duration_ms(aggregate)
            windows[window] = None
            asks_has = asks_has or window[1] == 0
            if aggregate.field is None:
                continue
            if aggregate.uses_labels:
                labels[window] = None
            elif aggregate.agg in (Agg.MIN, Agg.MAX):
                kind: Extreme = "min" if aggregate.agg is Agg.MIN else "max"
                index = spec.extreme_fields.index((aggregate.field, kind)) + 1
                extremes[index, aggregate.field, kind, *window] = None
        return cls(entity, spec, tuple(windows), tuple(extremes), tuple(labels), asks_has)


def _bounds(windows: Sequence[tuple[int, int]], time_ms: int) -> list[int]:
    out: dict[int, None] = {}
    for window, delay in windows:
        out[time_ms - window - delay] = None
        out[time_ms - delay] = None
    return list(out)


class EventLogView:
    """An entity's event log as seen at the boundaries one read fetched (:class:`EventLogQuery`)."""

    __slots__ = ("_extremes", "_has", "_heads", "_sum_index")

    def __init__(self, heads: dict[int, tuple[int, list[float]] | None],
                 extremes: dict[tuple[str, str, int, int], tuple[float, float] | None],
                 has: tuple[str, int, bool] | None, sum_fields: Sequence[str]) -> None:
        #: boundary -> (seq, flat sums) of its floor entry; None: trimmed past it.
        self._heads = heads
        self._extremes = extremes
        self._has = has
        self._sum_index = {name: 2 * i for i, name in enumerate(sum_fields)}

    def _head(self, time_ms: int) -> tuple[int, list[float]]:
        try:
            head = self._heads[time_ms]
        except KeyError:
            raise LookupError(f"boundary {time_ms} was not read") from None
        if head is None:
            raise OutOfRange(f"{time_ms} is before the log's anchor")
        return head

    def count(self, after_ms: int, until_ms: int) -> int:
        return self._head(until_ms)[0] - self._head(after_ms)[0]

    def total(self, name: str, after_ms: int, until_ms: int) -> float:
        (upper, high), (lower, low) = self._head(until_ms), self._head(after_ms)
        if upper <= lower:
            return 0.0
        i = self._sum_index[name]
        if not low:
            return dd_difference(high[i], high[i + 1], 0.0, 0.0)
        return dd_difference(high[i], high[i + 1], low[i], low[i + 1])

    def extreme(self, name: str, kind: Extreme, after_ms: int, until_ms: int) -> float | None:
        self._head(until_ms), self._head(after_ms)  # OutOfRange first, as the reference
        try:
            pair = self._extremes[name, kind, after_ms, until_ms]
        except KeyError:
            raise LookupError(f"{kind} of {name} over ({after_ms}, {until_ms}] was not read") \
                from None
        if pair is None:
            return None
        return min(pair) if kind == "min" else max(pair)

    def has(self, tid: str, time_ms: int) -> bool:
        if self._has is None or self._has[:2] != (tid, time_ms):
            raise LookupError(f"membership of ({time_ms}, {tid!r}) was not read")
        return self._has[2]


class LabelLogView:
    """An entity's label log at the boundaries one read fetched (:class:`LabelLogQuery`)."""

    __slots__ = ("_fields", "_heads", "_known", "_known_by")

    def __init__(self, heads: dict[int, tuple[int, list[float]] | None],
                 known: list[tuple[int, list[float], str]], known_by_ms: int,
                 fields: Sequence[str]) -> None:
        self._heads = heads
        self._known = known
        self._known_by = known_by_ms
        self._fields = {name: i for i, name in enumerate(fields)}

    def known_total(self, name: str, after_ms: int, until_ms: int, known_by_ms: int) -> float:
        if known_by_ms != self._known_by:
            raise LookupError(f"labels known by {known_by_ms} were not read")
        try:
            lower_head, upper_head = self._heads[after_ms], self._heads[until_ms]
        except KeyError:
            raise LookupError(f"label window ({after_ms}, {until_ms}] was not read") from None
        if lower_head is None:
            raise OutOfRange(f"{after_ms} is before the label log's anchor")
        assert upper_head is not None  # until >= after: its floor exists when after's does
        (upper, high), (lower, low) = upper_head, lower_head
        if upper <= lower:
            return 0.0
        i = self._fields[name]
        result = dd_difference(high[2 * i], high[2 * i + 1], *(low[2 * i:2 * i + 2] or (0.0, 0.0)))
        unknown = [values[i] for time_ms, values, _ in self._known
                   if after_ms < time_ms <= until_ms]
        return result - math.fsum(unknown) if unknown else result


def _head(text: bytes) -> tuple[int, list[float]] | None:
    if text == _OUT:
        return None
    return parse_head(text) if text else (0, [])


class PrefixLogReader:
    """Builds a request's read, runs it in one ``EVALSHA``, and turns the reply into views."""

    def __init__(self, client: Client, feature_set: FeatureSet) -> None:
        feature_set.require_classic("the online prefix layout")
        self.client = client
        self.feature_set = feature_set
        #: A Redis Cluster: tagged keys, one ``EVALSHA`` per entity (see :meth:`read`).
        self.cluster = is_cluster(client)
        self.plans = [EntityReadPlan.of(feature_set, entity) for entity in feature_set.entities]
        self.sha = hashlib.sha1(READ_SCRIPT.encode()).hexdigest()

    @staticmethod
    def entity_args(plan: EntityReadPlan, transaction_id: str, time_ms: int) -> list[Any]:
        """The argument segment of one entity (layout in the module docstring)."""
        bounds = _bounds(plan.event_windows, time_ms)
        index = {bound: i + 1 for i, bound in enumerate(bounds)}
        args: list[Any] = [len(bounds), *bounds, len(plan.extremes)]
        for field, _, _, window, delay in plan.extremes:
            args += [field, index[time_ms - window - delay], index[time_ms - delay]]
        args += [time_ms if plan.asks_has else "", transaction_id]
        labels = _bounds(plan.label_windows, time_ms)
        args += [len(labels), *labels, time_ms]
        return args

    def request(self, transaction_id: str, time_ms: int,
                ids: Mapping[str, str | None]) -> tuple[list[str], list[Any], list[EntityReadPlan]]:
        """(KEYS, ARGV, plans asked) of the read for a request; ``ids``: id field -> value.

        An entity whose id the request lacks (no terminal) is not read.
        """
        keys: list[str] = []
        args: list[Any] = []
        asked: list[EntityReadPlan] = []
        for plan in self.plans:
            entity_id = ids.get(plan.entity.keys[0])
            if entity_id is None:
                continue
            keys += log_keys(self.feature_set, plan.entity.name, entity_id, self.cluster)
            args += self.entity_args(plan, transaction_id, time_ms)
            asked.append(plan)
        return keys, args, asked

    def entity_calls(self, transaction_id: str, time_ms: int, ids: Mapping[str, str | None]
                     ) -> tuple[list[list[Any]], list[EntityReadPlan]]:
        """``EVALSHA`` arguments (after the sha) of :data:`READ_SCRIPT`, one call per entity.

        For a Redis Cluster, where an entity's keys share a slot but two entities'
        keys do not: each call's reply is a one-element list, and the elements in
        order are the reply :meth:`views` takes.
        """
        calls: list[list[Any]] = []
        asked: list[EntityReadPlan] = []
        for plan in self.plans:
            entity_id = ids.get(plan.entity.keys[0])
            if entity_id is None:
                continue
            keys = log_keys(self.feature_set, plan.entity.name, entity_id, self.cluster)
            calls.append([len(keys), *keys, *self.entity_args(plan, transaction_id, time_ms)])
            asked.append(plan)
        return calls, asked

    def views(self, asked: Sequence[EntityReadPlan], reply: Sequence[Any], transaction_id: str,
              time_ms: int) -> dict[str, tuple[EventLogQuery | None, LabelLogQuery | None]]:
        """The :data:`~rtml_features.request_vector.EntityLogs` of a read's reply."""
        out: dict[str, tuple[EventLogQuery | None, LabelLogQuery | None]] = {}
        for plan, (events, labels) in zip(asked, reply, strict=True):
            event_view = label_view = None
            if events:
                raw_heads, raw_extremes, has = events
                heads = {bound: _head(text) for bound, text in
                         zip(_bounds(plan.event_windows, time_ms), raw_heads, strict=True)}
                extremes: dict[tuple[str, str, int, int], tuple[float, float] | None] = {}
                for q, (_, field, kind, window, delay) in enumerate(plan.extremes):
                    a, b = raw_extremes[2 * q], raw_extremes[2 * q + 1]
                    extremes[field, kind, time_ms - window - delay, time_ms - delay] = (
                        (float(a), float(b)) if a else None)
                event_view = EventLogView(
                    heads, extremes, (transaction_id, time_ms, bool(has)) if plan.asks_has
                    else None, plan.spec.sum_fields)
            if labels:
                raw_heads, known = labels
                label_heads = {bound: _head(text) for bound, text in
                               zip(_bounds(plan.label_windows, time_ms), raw_heads, strict=True)}
                label_view = LabelLogView(label_heads, [parse_known(m) for m in known], time_ms,
                                          plan.spec.label_fields)
            out[plan.entity.name] = (event_view, label_view)
        return out

    def read(self, transaction_id: str, time_ms: int, ids: Mapping[str, str | None]
             ) -> dict[str, tuple[EventLogQuery | None, LabelLogQuery | None]]:
        """Every asked entity's views for a request at ``time_ms``: one ``EVALSHA``.

        On a Redis Cluster one ``EVALSHA`` per entity, in one pipeline per node (the
        nodes in parallel: one round trip's time)."""
        if self.cluster:
            assert isinstance(self.client, RedisCluster)
            calls, plans = self.entity_calls(transaction_id, time_ms, ids)
            replies = cluster_evalsha(self.client, READ_SCRIPT, self.sha, calls)
            return self.views(plans, [reply[0] for reply in replies], transaction_id, time_ms)
        keys, args, asked = self.request(transaction_id, time_ms, ids)
        try:
            reply = self.client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.sha = self.client.script_load(READ_SCRIPT)
            reply = self.client.evalsha(self.sha, len(keys), *keys, *args)
        return self.views(asked, reply, transaction_id, time_ms)
