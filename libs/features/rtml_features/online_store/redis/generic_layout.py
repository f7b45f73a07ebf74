"""Redis layout for request-time vectors of *any* feature set (every definition of issue #20).

The classic prefix layout (:mod:`.prefix_layout`) answers the first definitions
(count, sum, mean, min, max over one-key entities) and stays their fast path.
This layout answers every definition — stddev, exact count_distinct, last,
time_since_previous, time_since_first, LIFETIME windows, compound entities,
label delays on any aggregate — with the same promises: a request at ``t``
computes exact ``(t - n - d, t - d]`` windows (its own event included when
``d == 0``) from a bounded number of members per entity, read by one script
call, whatever the entity's activity. :mod:`.generic_writer` keeps it up to
date, :mod:`.generic_reader` reads it, :mod:`rtml_features.request_generic`
does the arithmetic.

Keys per (feature set, version, entity, id), under
:func:`~rtml_features.online_store.redis.store.key_prefix`; ``T`` is
``entity:id`` on a single server and the hash tag ``{entity:id}`` on a Redis
Cluster (:func:`~.connection.entity_tag`), so every key of an entity shares a
slot and one script reads them all:

``@gev:T`` — the **event log**, sorted set, score event time (ms), member
    ``SEQ|PAYLOAD|LEVELS|ID``: ``SEQ`` the entity's event count up to this one
    (trimmed events included; 12 hex digits, so equal scores sort in
    ``(time, id)`` order), ``PAYLOAD`` the big-endian IEEE doubles in hex
    (16 digits each) of, in order: per sum field the running double-double
    sum ``(hi, lo)`` (sum, mean, stddev), per stddev field the running
    double-double sum of squares (each square added as its exact two-product,
    so the sums stay exact to ~2**-100 relative), per LIFETIME min/max the
    running extreme (trimmed events included), per ``last`` field this event's
    own value; ``LEVELS`` per finite min/max the sparse-table levels (as the
    classic log: level ``k`` is the extreme of the ``2**k`` events ending
    here), ``/`` between fields; ``ID`` last (any character).
``@glb:T`` — the **label log**: score the labelled event's time, member
    ``SEQ|PAYLOAD|ID`` with the running double-double sums of the label fields
    over events whose first label is non-zero.
``@glk:T`` — the **labelled-at index**: score ``labeled_at``, member
    ``EVENT_MS|V1,V2|ID`` (a request subtracts labels known after it).
``@gmt:T`` — a hash of kept scalars, never trimmed: ``first`` (the entity's
    first event time ever: LIFETIME time_since_first, and "no event before
    this boundary" once the log is trimmed) and ``lfirst`` (its first
    labelled event's time).
``@gdl:FIELD:T`` — per count_distinct field: value -> its **latest**
    occurrence time (a window ``(a, u]`` with nothing stored after ``u``
    counts ``ZCOUNT (a u``).
``@gdo:FIELD:T`` — the **occurrences**, score 0, member
    ``HEXVALUE:TIME16:ID`` (value in hex, time in 16 hex digits): the latest
    occurrence of a value at or before ``u`` is one ``ZRANGE BYLEX REV LIMIT
    0 1``, which corrects the count for values whose latest occurrence is
    after ``u`` (events applied beyond the request's time, or a label delay).
``@gdf:FIELD:T`` — value -> its **first** occurrence time, never trimmed:
    a LIFETIME count_distinct is ``ZCOUNT -inf u``, exact whatever was trimmed.

Trimming (the writer): events older than the entity's horizon (the longest
finite window + delay, a LIFETIME window's delay, and the writer's accepted
lateness) are dropped, keeping the anchor (the last one at or before the
cut-off), as the classic log does; their occurrences go with them. Running
sums, prefix extremes, ``first`` and the first-seen values keep what LIFETIME
windows need.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property, lru_cache
from typing import Any, Literal

from rtml_features.definitions import Agg, Entity, FeatureSet, WindowAggregate
from rtml_features.online_store.redis.connection import entity_tag
from rtml_features.online_store.redis.store import key_prefix

Extreme = Literal["min", "max"]
SEQ_DIGITS = 12
TIME_DIGITS = 16
EVENT_LOG, LABEL_LOG, KNOWN_INDEX, META = "@gev", "@glb", "@glk", "@gmt"
LATEST, OCCURRENCES, FIRST_SEEN = "@gdl", "@gdo", "@gdf"
#: Keys per entity before its count_distinct fields' three each.
FIXED_KEYS = 4
_MS = timedelta(milliseconds=1)


def window_ms(aggregate: WindowAggregate) -> tuple[int, int]:
    """(window, delay) of an aggregate in integer milliseconds."""
    return (aggregate.window // _MS, aggregate.delay // _MS)



@dataclass(frozen=True)
class GenericSpec:
    """What one entity's keys hold for a feature set, derived from its definitions."""

    entity: Entity
    #: Fields with running double-double sums (sum, mean, stddev of event fields).
    sum_fields: tuple[str, ...]
    #: Fields with running double-double sums of squares (stddev).
    square_fields: tuple[str, ...]
    #: (field, kind) of LIFETIME min / max: a running extreme per event.
    lifetime_extremes: tuple[tuple[str, Extreme], ...]
    #: (field, kind) of finite-window min / max: sparse-table levels per event.
    extremes: tuple[tuple[str, Extreme], ...]
    #: Fields whose own value each event carries (``last``).
    last_fields: tuple[str, ...]
    #: count_distinct fields (three keys each).
    distinct_fields: tuple[str, ...]
    #: Label fields of label-delayed sums / means.
    label_fields: tuple[str, ...]
    #: How far behind the entity's newest event a request window can reach (ms).
    horizon_ms: int
    #: A LIFETIME window sums label fields: a label may arrive long after its event was
    #: trimmed from the event log, and must still reach the label log.
    lifetime_labels: bool = False

    @cached_property
    def numeric_fields(self) -> tuple[str, ...]:
        """Event fields read as numbers, each once."""
        names = [*self.sum_fields, *(f for f, _ in self.lifetime_extremes),
                 *(f for f, _ in self.extremes), *self.last_fields]
        return tuple(dict.fromkeys(names))

    @property
    def payload_size(self) -> int:
        """Doubles in an event member's payload."""
        return (2 * len(self.sum_fields) + 2 * len(self.square_fields)
                + len(self.lifetime_extremes) + len(self.last_fields))


def generic_spec(feature_set: FeatureSet, entity: Entity) -> GenericSpec:
    """The :class:`GenericSpec` of ``entity`` for every aggregate of ``feature_set`` over it."""
    sums: dict[str, None] = {}
    squares: dict[str, None] = {}
    life: dict[tuple[str, Extreme], None] = {}
    extremes: dict[tuple[str, Extreme], None] = {}
    last: dict[str, None] = {}
    distinct: dict[str, None] = {}
    labels: dict[str, None] = {}
    horizon = 0
    lifetime_labels = False
    for aggregate in feature_set.window_aggregates:
        if aggregate.entity != entity:
            continue
        lifetime_labels = lifetime_labels or (aggregate.uses_labels and aggregate.is_lifetime)
        window, delay = window_ms(aggregate)
        horizon = max(horizon, delay if aggregate.is_lifetime else window + delay)
        name, agg = aggregate.field, aggregate.agg
        if name is None:
            continue
        if aggregate.uses_labels:
            labels[name] = None
        elif agg in (Agg.SUM, Agg.MEAN):
            sums[name] = None
        elif agg is Agg.STDDEV:
            sums[name] = None
            squares[name] = None
        elif agg in (Agg.MIN, Agg.MAX):
            kind: Extreme = "min" if agg is Agg.MIN else "max"
            (life if aggregate.is_lifetime else extremes)[name, kind] = None
        elif agg is Agg.LAST:
            last[name] = None
        elif agg is Agg.COUNT_DISTINCT:
            distinct[name] = None
    return GenericSpec(entity, tuple(sums), tuple(squares), tuple(life), tuple(extremes),
                       tuple(last), tuple(distinct), tuple(labels), horizon, lifetime_labels)


def entity_keys(feature_set: FeatureSet, spec: GenericSpec, entity_id: str,
                tagged: bool = False) -> list[str]:
    """Every key of one entity: event log, label log, labelled-at index, meta, then per
    count_distinct field its latest / occurrences / first-seen sets (one slot when tagged)."""
    base = key_prefix(feature_set)
    name = spec.entity.name
    tail = entity_tag(name, entity_id) if tagged else f"{name}:{entity_id}"
    keys = [f"{base}{prefix}:{tail}" for prefix in (EVENT_LOG, LABEL_LOG, KNOWN_INDEX, META)]
    for field in spec.distinct_fields:
        keys += [f"{base}{prefix}:{field}:{tail}" for prefix in (LATEST, OCCURRENCES, FIRST_SEEN)]
    return keys


@lru_cache(maxsize=64)
def _doubles(count: int) -> struct.Struct:
    return struct.Struct(f">{count}d")


def payload_text(values: Sequence[float]) -> str:
    """Doubles as 16 hex digits each, no separator (exact).

    >>> payload_text([1.5, -0.0])
    '3ff80000000000008000000000000000'
    """
    return _doubles(len(values)).pack(*values).hex() if values else ""


def parse_payload(text: bytes | str) -> tuple[float, ...]:
    """The doubles :func:`payload_text` spelled."""
    raw = bytes.fromhex(text.decode() if isinstance(text, bytes) else text)
    return _doubles(len(raw) // 8).unpack(raw) if raw else ()


def event_member(seq: int, payload: Sequence[float], levels: Sequence[Sequence[float]],
                 tid: str) -> bytes:
    """An event-log member (layout above).

    >>> event_member(2, [1.0], [[3.0, 2.0]], "a|b")
    b'000000000002|3ff0000000000000|3.0,2.0|a|b'
    """
    level_text = "/".join(",".join([repr(v) for v in field]) for field in levels)
    return f"{seq:0{SEQ_DIGITS}x}|{payload_text(payload)}|{level_text}|{tid}".encode()


def label_member(seq: int, payload: Sequence[float], tid: str) -> bytes:
    return f"{seq:0{SEQ_DIGITS}x}|{payload_text(payload)}|{tid}".encode()


def known_member(time_ms: int, values: Sequence[float], tid: str) -> bytes:
    return f"{time_ms}|{','.join(repr(v) for v in values)}|{tid}".encode()


def parse_head(head: bytes) -> tuple[int, tuple[float, ...]]:
    """``(seq, payload)`` of a member's head ``SEQ|PAYLOAD``."""
    return int(head[:SEQ_DIGITS], 16), parse_payload(head[SEQ_DIGITS + 1:])


def parse_known(member: bytes) -> tuple[int, list[float], str]:
    """``(event time ms, label values, id)`` of a labelled-at index member."""
    time_text, values, tid = member.split(b"|", 2)
    return (int(time_text), [float(v) for v in values.split(b",")] if values else [],
            tid.decode())


def distinct_text(value: Any) -> str | None:
    """A count_distinct value as stored (None: absent, not counted).

    Numbers (booleans as 1/0) are spelled as floats, so ``1`` and ``1.0`` are one
    value, as in the reference's set of values.

    >>> distinct_text("FR"), distinct_text(2), distinct_text(True), distinct_text(None)
    ('FR', '2.0', '1.0', None)
    """
    if value is None:
        return None
    if isinstance(value, bool | int | float):
        return repr(float(value))
    return str(value)


def occurrence_member(value: str, time_ms: int, tid: str) -> bytes:
    """An occurrence-index member: ``HEXVALUE:TIME16:ID``; members of one value sort by time."""
    return f"{value.encode().hex()}:{max(time_ms, 0):0{TIME_DIGITS}x}:{tid}".encode()


def time_hex(time_ms: int) -> str:
    """A time as :func:`occurrence_member` spells it (times before 1970 clamp to 0)."""
    return f"{max(time_ms, 0):0{TIME_DIGITS}x}"


def entity_ids(feature_set: FeatureSet, event: Mapping[str, Any]) -> dict[str, str | None]:
    """Entity name -> the event's id for it (None: a key field is absent)."""
    return {entity.name: entity.id_of(event) for entity in feature_set.entities}
