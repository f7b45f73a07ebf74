"""Reading what a request needs of the generic layout: one script call for every entity.

Per entity, :data:`READ_SCRIPT` finds server side, each in O(log n):

* the floor entry of every window boundary (``ZRANGE .. BYSCORE REV LIMIT 0 1``),
  cut to its head ``SEQ|PAYLOAD`` (counts, sums, sums of squares, LIFETIME
  extremes); a boundary before the entity's first event ever is "nothing
  before" even once the log is trimmed (the meta hash's ``first``);
* per finite min / max the one sparse-table level of two entries (a ``ZRANK``
  and a ``ZRANGE`` by rank), as the classic reader;
* whether the request's own event is already stored (the entries at exactly ``t``);
* per ``last`` / ``time_since_previous`` window end: the two newest entries at
  or before it (the request's own event may be one), heads and ids only;
* per windowed ``time_since_first``: the oldest entry of the window;
* per count_distinct: the exact count — ``ZCOUNT (a u`` of the latest-occurrence
  set, corrected for each value whose latest occurrence is after ``u`` by its
  latest occurrence at or before ``u`` (one ``ZRANGE BYLEX REV LIMIT 0 1``),
  plus the request's own value when it is new to the window; a LIFETIME
  count is ``ZCOUNT -inf u`` of the first-seen set;
* the label log's floors and the labels known only after ``t``.

A live request (nothing stored after ``t``) makes no correction, so its cost
and reply size do not depend on the entity's activity. What is not bounded:
a count_distinct with a label delay ``d`` corrects every value seen in the
last ``d`` (``(t - d, t]`` is "after ``u``"), and a replayed request every
value seen since its time — both bounded by distinct values, not events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from rtml_features.definitions import Agg, FeatureSet
from rtml_features.online_store.redis.connection import Client, cluster_evalsha, is_cluster
from rtml_features.online_store.redis.generic_layout import (
    FIXED_KEYS,
    SEQ_DIGITS,
    GenericSpec,
    distinct_text,
    entity_keys,
    generic_spec,
    parse_head,
    parse_known,
    parse_payload,
    time_hex,
    window_ms,
)
from rtml_features.request_generic import EntityRead

READ_LUA = f"""
local function g_seq(m) return tonumber(string.sub(m, 1, {SEQ_DIGITS}), 16) end
local function g_sep(m, n)
  local p = 0
  for _ = 1, n do p = string.find(m, '|', p + 1, true) end
  return p
end
local function g_floor(key, at, first)
  local m = redis.call('ZRANGE', key, at, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, 1)[1]
  if m then return m, string.sub(m, 1, g_sep(m, 2) - 1) end
  local head = redis.call('ZRANGE', key, 0, 0)[1]
  if head and g_seq(head) > 1 and not (first and tonumber(at) < first) then
    return false, '!'
  end
  return false, ''
end
local function g_level(m, field, level)
  local f = 0
  for section in string.gmatch(string.sub(m, g_sep(m, 2) + 1, g_sep(m, 3) - 1), '[^/]+') do
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
local function g_hex(v)
  return (string.gsub(v, '.', function(c) return string.format('%02x', string.byte(c)) end))
end
local function g_distinct(lat, occ, fst, a, u, lifetime, cur, v, uh1)
  if lifetime then
    local c = redis.call('ZCOUNT', fst, '-inf', u)
    if cur and v ~= '' then
      local s = redis.call('ZSCORE', fst, v)
      if (not s) or tonumber(s) > tonumber(u) then c = c + 1 end
    end
    return c
  end
  local an, un = tonumber(a), tonumber(u)
  local c = redis.call('ZCOUNT', lat, '(' .. a, u)
  local counted = false
  if v ~= '' then
    local s = redis.call('ZSCORE', lat, v)
    if s and tonumber(s) > an and tonumber(s) <= un then counted = true end
  end
  for _, value in ipairs(redis.call('ZRANGE', lat, '(' .. u, '+inf', 'BYSCORE')) do
    local hv = g_hex(value)
    local m = redis.call('ZRANGE', occ, '(' .. hv .. ':' .. uh1, '[' .. hv .. ':',
                         'BYLEX', 'REV', 'LIMIT', 0, 1)[1]
    if m and tonumber(string.sub(m, #hv + 2, #hv + 17), 16) > an then
      c = c + 1
      if value == v then counted = true end
    end
  end
  if cur and v ~= '' and not counted then c = c + 1 end
  return c
end
local function g_read(k0, argv, pos)
  local nfields = tonumber(argv[pos])
  local ev, lb, lk, meta = KEYS[k0], KEYS[k0 + 1], KEYS[k0 + 2], KEYS[k0 + 3]
  local t, tid = argv[pos + 1], argv[pos + 2]
  local nb = tonumber(argv[pos + 3])
  local b0 = pos + 4
  local x0 = b0 + nb
  local nx = tonumber(argv[x0])
  local p0 = x0 + 1 + 3 * nx
  local np = tonumber(argv[p0])
  local f0 = p0 + 1 + np
  local nf = tonumber(argv[f0])
  local d0 = f0 + 1 + 2 * nf
  local nd = tonumber(argv[d0])
  local l0 = d0 + 1 + 7 * nd
  local nl = tonumber(argv[l0])
  local next_pos, next_key = l0 + 1 + nl, k0 + {FIXED_KEYS} + 3 * nfields
  if redis.call('EXISTS', ev) == 0 then return {{0}}, next_pos, next_key end
  local mv = redis.call('HMGET', meta, 'first', 'lfirst')
  local first, lfirst = tonumber(mv[1]), tonumber(mv[2])
  local members, heads, seqs, ranks = {{}}, {{}}, {{}}, {{}}
  for b = 1, nb do
    members[b], heads[b] = g_floor(ev, argv[b0 + b - 1], first)
    seqs[b] = members[b] and g_seq(members[b]) or 0
  end
  local has = 0
  for _, m in ipairs(redis.call('ZRANGE', ev, t, t, 'BYSCORE')) do
    if string.sub(m, g_sep(m, 3) + 1) == tid then has = 1 break end
  end
  local extremes = {{}}
  for q = 0, nx - 1 do
    local field = tonumber(argv[x0 + 1 + 3 * q])
    local a, u = tonumber(argv[x0 + 2 + 3 * q]), tonumber(argv[x0 + 3 + 3 * q])
    local size = seqs[u] - seqs[a]
    if heads[a] == '!' or heads[u] == '!' or size <= 0 then
      extremes[2 * q + 1], extremes[2 * q + 2] = '', ''
    else
      local level, span = 0, 1
      while span * 2 <= size do span, level = span * 2, level + 1 end
      if not ranks[u] then ranks[u] = redis.call('ZRANK', ev, members[u]) end
      local other = redis.call('ZRANGE', ev, ranks[u] - size + span, ranks[u] - size + span)[1]
      extremes[2 * q + 1] = g_level(members[u], field, level)
      extremes[2 * q + 2] = g_level(other, field, level)
    end
  end
  local previous = {{}}
  for q = 0, np - 1 do
    local u = argv[b0 + tonumber(argv[p0 + 1 + q]) - 1]
    local got = redis.call('ZRANGE', ev, u, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, 2, 'WITHSCORES')
    local out = {{}}
    for i = 1, #got, 2 do
      local m = got[i]
      out[#out + 1] = string.sub(m, 1, g_sep(m, 2) - 1)
      out[#out + 1] = string.sub(m, g_sep(m, 3) + 1)
      out[#out + 1] = got[i + 1]
    end
    previous[q + 1] = out
  end
  local oldest = {{}}
  for q = 0, nf - 1 do
    local a = argv[b0 + tonumber(argv[f0 + 1 + 2 * q]) - 1]
    local u = argv[b0 + tonumber(argv[f0 + 2 + 2 * q]) - 1]
    oldest[q + 1] = redis.call('ZRANGE', ev, '(' .. a, u, 'BYSCORE', 'LIMIT', 0, 1,
                               'WITHSCORES')[2] or ''
  end
  local distinct = {{}}
  for q = 0, nd - 1 do
    local o = d0 + 1 + 7 * q
    local k = k0 + {FIXED_KEYS} + 3 * (tonumber(argv[o]) - 1)
    distinct[q + 1] = g_distinct(KEYS[k], KEYS[k + 1], KEYS[k + 2], argv[o + 1], argv[o + 2],
                                 argv[o + 3] == '1', argv[o + 4] == '1' and has == 0,
                                 argv[o + 5], argv[o + 6])
  end
  local lheads, later = {{}}, {{}}
  if nl > 0 then
    local low, high = math.huge, -math.huge
    for b = 1, nl do
      local bound = argv[l0 + b]
      local _, head = g_floor(lb, bound, lfirst)
      lheads[b] = head
      low, high = math.min(low, tonumber(bound)), math.max(high, tonumber(bound))
    end
    for _, m in ipairs(redis.call('ZRANGE', lk, '(' .. t, '+inf', 'BYSCORE')) do
      local time = tonumber(string.sub(m, 1, string.find(m, '|', 1, true) - 1))
      if time > low and time <= high then later[#later + 1] = m end
    end
  end
  return {{1, has, mv[1] or '', heads, extremes, previous, oldest, distinct, lheads, later}},
         next_pos, next_key
end
local function rtml_read_generic(first_key, first_arg)
  local out, pos, k = {{}}, first_arg, first_key
  while k <= #KEYS do
    out[#out + 1], pos, k = g_read(k, ARGV, pos)
  end
  return out
end
"""

#: KEYS: every asked entity's keys; ARGV: their segments (:meth:`GenericReader.entity_args`).
READ_SCRIPT = READ_LUA + "return rtml_read_generic(1, 1)\n"


@dataclass(frozen=True)
class GenericReadPlan:
    """What a request reads of one entity, from the feature set's definitions."""

    spec: GenericSpec
    #: (window, delay) ms of every aggregate over the entity.
    windows: tuple[tuple[int, int], ...]
    #: (extreme index 0-based, window, delay) of finite min / max.
    extremes: tuple[tuple[int, int, int], ...]
    #: (window, delay) of last / time_since_previous.
    previous: tuple[tuple[int, int], ...]
    #: (window, delay) of windowed time_since_first.
    oldest: tuple[tuple[int, int], ...]
    #: (distinct field index 0-based, window, delay, lifetime) of count_distinct.
    distinct: tuple[tuple[int, int, int, bool], ...]
    #: (window, delay) of label-field aggregates.
    labels: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, feature_set: FeatureSet, spec: GenericSpec) -> GenericReadPlan:
        windows: dict[Any, None] = {}
        extremes: dict[Any, None] = {}
        previous: dict[Any, None] = {}
        oldest: dict[Any, None] = {}
        distinct: dict[Any, None] = {}
        labels: dict[Any, None] = {}
        for aggregate in feature_set.window_aggregates:
            if aggregate.entity != spec.entity:
                continue
            window = window_ms(aggregate)
            windows[window] = None
            agg, name = aggregate.agg, aggregate.field
            if aggregate.uses_labels:
                labels[window] = None
            elif agg in (Agg.MIN, Agg.MAX) and not aggregate.is_lifetime:
                kind = "min" if agg is Agg.MIN else "max"
                extremes[spec.extremes.index((name or "", kind)), *window] = None
            elif agg in (Agg.LAST, Agg.TIME_SINCE_PREVIOUS):
                previous[window] = None
            elif agg is Agg.TIME_SINCE_FIRST and not aggregate.is_lifetime:
                oldest[window] = None
            elif agg is Agg.COUNT_DISTINCT:
                distinct[spec.distinct_fields.index(name or ""), *window,
                         aggregate.is_lifetime] = None
        return cls(spec, tuple(windows), tuple(extremes), tuple(previous), tuple(oldest),
                   tuple(distinct), tuple(labels))


def _bounds(windows: Sequence[tuple[int, int]], t: int) -> list[int]:
    out: dict[int, None] = {}
    for window, delay in windows:
        out[t - window - delay] = None
        out[t - delay] = None
    return list(out)


class GenericReader:
    """Builds a request's read of the generic layout, runs it, and parses the reply."""

    def __init__(self, client: Client, feature_set: FeatureSet) -> None:
        self.client = client
        self.feature_set = feature_set
        self.cluster = is_cluster(client)
        self.plans = [GenericReadPlan.of(feature_set, generic_spec(feature_set, e))
                      for e in feature_set.entities]
        self.sha = hashlib.sha1(READ_SCRIPT.encode()).hexdigest()

    @staticmethod
    def entity_args(plan: GenericReadPlan, event: Mapping[str, Any], tid: str,
                    t: int) -> list[Any]:
        """One entity's ARGV segment (order: the script's ``g_read``)."""
        bounds = _bounds(plan.windows, t)
        index = {bound: i + 1 for i, bound in enumerate(bounds)}
        args: list[Any] = [len(plan.spec.distinct_fields), t, tid, len(bounds), *bounds,
                           len(plan.extremes)]
        for field, window, delay in plan.extremes:
            args += [field + 1, index[t - window - delay], index[t - delay]]
        args.append(len(plan.previous))
        args += [index[t - delay] for _, delay in plan.previous]
        args.append(len(plan.oldest))
        for window, delay in plan.oldest:
            args += [index[t - window - delay], index[t - delay]]
        args.append(len(plan.distinct))
        for field, window, delay, lifetime in plan.distinct:
            value = distinct_text(event.get(plan.spec.distinct_fields[field]))
            args += [field + 1, t - window - delay, t - delay, int(lifetime), int(delay == 0),
                     "" if value is None else value, time_hex(t - delay + 1)]
        labels = _bounds(plan.labels, t)
        return [*args, len(labels), *labels]

    def calls(self, event: Mapping[str, Any]) -> tuple[list[list[Any]], list[GenericReadPlan]]:
        """Per entity the event has an id for: its keys and ARGV segment, and the plans."""
        schema = self.feature_set.schema
        t, tid = int(event[schema.event_time]), str(event[schema.id_field])
        calls: list[list[Any]] = []
        asked: list[GenericReadPlan] = []
        for plan in self.plans:
            entity_id = plan.spec.entity.id_of(event)
            if entity_id is None:
                continue
            keys = entity_keys(self.feature_set, plan.spec, entity_id, self.cluster)
            calls.append([keys, self.entity_args(plan, event, tid, t)])
            asked.append(plan)
        return calls, asked

    def parse(self, plan: GenericReadPlan, reply: Sequence[Any], t: int) -> EntityRead:
        """One entity's reply as an :class:`~rtml_features.request_generic.EntityRead`."""
        if not reply[0]:
            return EntityRead()
        _, has, first, heads, extremes, previous, oldest, distinct, lheads, later = reply
        read = EntityRead(exists=True, has=bool(has), first=int(first) if first else None)
        for bound, text in zip(_bounds(plan.windows, t), heads, strict=True):
            read.heads[bound] = None if text == b"!" else parse_head(text) if text else (0, ())
        for q, (field, window, delay) in enumerate(plan.extremes):
            a, b = extremes[2 * q], extremes[2 * q + 1]
            read.extremes[field, t - window - delay, t - delay] = (
                (float(a), float(b)) if a else None)
        for (_, delay), got in zip(plan.previous, previous, strict=True):
            read.previous[t - delay] = [
                (int(float(got[i + 2])), got[i + 1].decode(),
                 parse_payload(got[i][SEQ_DIGITS + 1:])) for i in range(0, len(got), 3)]
        for (window, delay), time_text in zip(plan.oldest, oldest, strict=True):
            read.oldest[t - window - delay, t - delay] = (
                int(float(time_text)) if time_text else None)
        for (field, window, delay, _), count in zip(plan.distinct, distinct, strict=True):
            read.distinct[field, t - window - delay, t - delay] = int(count)
        for bound, text in zip(_bounds(plan.labels, t), lheads, strict=True):
            read.label_heads[bound] = (None if text == b"!" else parse_head(text) if text
                                       else (0, ()))
        read.later_labels = [parse_known(m) for m in later]
        return read

    def read(self, event: Mapping[str, Any]) -> dict[str, EntityRead]:
        """Every entity's read for a request: one ``EVALSHA`` (one per entity, in one
        pipeline per node, on a Redis Cluster)."""
        t = int(event[self.feature_set.schema.event_time])
        calls, asked = self.calls(event)
        if not calls:
            return {}
        if isinstance(self.client, RedisCluster):
            replies = cluster_evalsha(self.client, READ_SCRIPT, self.sha,
                                      [[len(k), *k, *a] for k, a in calls])
            flat = [reply[0] for reply in replies]
        else:
            keys = [key for k, _ in calls for key in k]
            args = [arg for _, a in calls for arg in a]
            try:
                flat = self.client.evalsha(self.sha, len(keys), *keys, *args)
            except NoScriptError:
                self.sha = self.client.script_load(READ_SCRIPT)
                flat = self.client.evalsha(self.sha, len(keys), *keys, *args)
        return {plan.spec.entity.name: self.parse(plan, reply, t)
                for plan, reply in zip(asked, flat, strict=True)}
