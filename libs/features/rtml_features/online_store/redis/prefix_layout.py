"""Redis layout of the per-entity prefix logs: keys, member texts, and why.

The prefix logs of :mod:`rtml_features.prefix_log` let a request compute any
window at its own time ``t`` from O(1) entries per boundary. This module fixes
how those entries sit in Redis; :mod:`.prefix_writer` keeps them up to date and
:mod:`.prefix_reader` reads the few a request needs in one round trip.

Keys, per (feature set name, version, entity, entity id), all under
:func:`~rtml_features.online_store.redis.store.key_prefix` (so a changed
definition never reads another version's logs); ``@`` cannot start an entity
name (identifiers only), so these never collide with the per-entity hashes
``{prefix}{entity}:{id}`` of :mod:`.store`:

``{prefix}@ev:{entity}:{id}`` — the **event log**, a sorted set
    score: event time (epoch ms); member::

        SEQ|S1hi,S1lo,S2hi,S2lo,...|E1l0,E1l1,.../E2l0,...|TRANSACTION_ID

    * ``SEQ``: the entity's event count up to and including this one (trimmed
      events included), 12 lower-case hex digits. Members of equal score sort
      lexicographically, so this fixed-width prefix makes Redis's order among
      simultaneous events the log's ``(time, id)`` order; the floor entry of a
      boundary ``x`` is then ``ZRANGE key x -inf BYSCORE REV LIMIT 0 1``. Seqs
      are contiguous in a log, so a window's event count is a seq difference
      and a seq difference is also a rank difference (sparse-table lookups).
    * ``S``: per sum field of the log spec (in its order), the running
      double-double sum ``(hi, lo)`` including this event, each double
      spelled as its 8 IEEE 754 bytes, big-endian, in 16 hex digits
      (:func:`sums_text`): exact like ``repr()``, and ~8x cheaper to write
      and ~3x to read (a pair: 0.12 µs against 1.0 µs), which the pipeline
      pays for every event.
    * ``E``: per extreme field ``(field, min|max)`` of the spec, the
      backward sparse-table levels: ``l_k`` is the extreme of the ``2**k``
      events ending here (as many levels as the log had events behind it).
    * the transaction id LAST: it may hold any character, including ``|``;
      the first three ``|`` are always the separators (hex and float texts
      have none).

``{prefix}@lb:{entity}:{id}`` — the **label log**, a sorted set
    score: the labelled event's time; member ``LSEQ|L1hi,L1lo,...|TRANSACTION_ID``:
    only events whose *first* label has a non-zero label field, ``LSEQ`` their
    count (trimmed included, 12 hex digits, same ordering argument), the
    running double-double sums of the spec's label fields (spelled as the
    event log's sums).

``{prefix}@lk:{entity}:{id}`` — the **labelled-at index**, a sorted set
    score: when the label became known (``labeled_at`` ms); member
    ``EVENT_TIME_MS|V1,V2,...|TRANSACTION_ID`` (the label's own values). A
    request at ``t`` subtracts the labels of its window known only after ``t``
    (``ZRANGE key (t +inf BYSCORE``): none for a live request.

Trimming keeps the anchor (the last entry at or before the cut-off), so a
boundary at or after the cut-off always has its floor entry; a log is known
to be trimmed when its first member's seq is above 1, which is how the reader
tells "no event before this boundary" (seq 0) from "unknown" (OutOfRange).

Sizes: an event member is ~13 bytes + 34 per sum field + ~20 per sparse-table
level + the id (the handbook feature set has no min/max and one sum field,
the customer's amounts: ~70 bytes with a 20-byte id; its terminal log is
count only: ~35 bytes); a busy entity's extreme fields cost ~20 bytes
x log2(events) per event, the price of answering any window's min/max from two
members. Redis's per-member skiplist + dict overhead (~60-70 bytes) comes on
top: measured (bench/request_features.py), an entity of 1,000,000 events with
one sum and one max field and 11-character ids takes ~300 MB of Redis memory,
~300 bytes an event. A request reads at most two members per boundary whatever the entity's
size (see :mod:`.prefix_reader`), and the reader's script cuts them to what was
asked (the head ``SEQ|S...`` and one level), so the bytes a request reads do
not grow with the entity's activity.

Every touched key's TTL is renewed by each write (longer than the longest
window + delay), so an entity that stops transacting disappears.

**Redis Cluster** (a ``redis+cluster://`` URL, :mod:`.connection`): the writer's
and the reader's scripts touch an entity's three keys together, so there the
keys end in the hash tag ``{entity:id}`` — ``{prefix}@ev:{customer:C1}`` instead
of ``{prefix}@ev:customer:C1`` — and share a slot. A single server keeps the
untagged names (no migration). The two layouts are never mixed: every service
derives the mode from the same ``RTML_REDIS_URL``. Entities of one request
(customer, terminal) live in different slots, usually on different nodes: the
writer sends one script call per entity and the reader one per entity, grouped
per node in one pipeline (docs/online-store.md, "Redis Cluster").
"""

from __future__ import annotations

import struct
from binascii import a2b_hex
from collections.abc import Sequence
from functools import lru_cache

from rtml_features.definitions import FeatureSet
from rtml_features.online_store.redis.connection import entity_tag
from rtml_features.online_store.redis.store import key_prefix

#: Version of the member texts this module writes (2: sums as hex IEEE bits, was
#: ``repr()``). Checkpoints record it; logs restored from another are written again
#: whole (``rtml_features.stream``), so no key keeps members a reader cannot parse.
MEMBER_SPELLING = 2
#: Hex digits of a member's seq (2**48 events per entity, ~280 trillion).
SEQ_DIGITS = 12
SEPARATOR = "|"
#: Between the sparse-table sections of two extreme fields.
FIELD_SEPARATOR = "/"

EVENT_LOG, LABEL_LOG, KNOWN_INDEX = "@ev", "@lb", "@lk"


def log_keys(feature_set: FeatureSet, entity: str, entity_id: str,
             tagged: bool = False) -> tuple[str, str, str]:
    """The event-log, label-log and labelled-at keys of one entity.

    ``tagged`` (a Redis Cluster): the three keys end in the hash tag
    ``{entity:id}`` instead of ``entity:id``, so they share a slot and one script
    reads or writes them together (see "Redis Cluster" above).
    """
    base = key_prefix(feature_set)
    tail = f":{entity_tag(entity, entity_id)}" if tagged else f":{entity}:{entity_id}"
    return (f"{base}{EVENT_LOG}{tail}", f"{base}{LABEL_LOG}{tail}", f"{base}{KNOWN_INDEX}{tail}")


def _floats(values: Sequence[float]) -> str:
    """Sparse-table levels and label values: ``repr()`` texts (exact)."""
    return ",".join([repr(value) for value in values])


@lru_cache(maxsize=64)
def _doubles(count: int) -> struct.Struct:
    return struct.Struct(f">{count}d")


#: Packs a ``(hi, lo)`` pair for :func:`sums_text`'s spelling (the writer's common case).
PACK_PAIR = _doubles(2).pack


def sums_text(values: Sequence[float]) -> str:
    """Running sums as a member spells them: 16 hex digits (IEEE 754, big-endian) each.

    >>> sums_text([30.0, -0.0])
    '403e000000000000,8000000000000000'
    >>> parse_sums(sums_text([0.1, 1e-300]).encode()) == [0.1, 1e-300]
    True
    """
    return _doubles(len(values)).pack(*values).hex(",", 8) if values else ""


def parse_sums(text: bytes) -> list[float]:
    """The doubles :func:`sums_text` spelled, bit for bit."""
    if not text:
        return []
    raw = a2b_hex(text.replace(b",", b""))
    return list(_doubles(len(raw) // 8).unpack(raw))


def event_member(seq: int, sums: Sequence[float], levels: Sequence[Sequence[float]],
                 tid: str) -> bytes:
    """The member text of an event-log entry.

    ``sums`` is flat (``hi, lo`` per sum field); ``levels`` one list per extreme field.

    >>> event_member(3, [30.0, 0.0], [[20.0, 30.0]], "tx|1")
    b'000000000003|403e000000000000,0000000000000000|20.0,30.0|tx|1'
    """
    extremes = FIELD_SEPARATOR.join([_floats(field) for field in levels])
    return f"{seq:0{SEQ_DIGITS}x}|{sums_text(sums)}|{extremes}|{tid}".encode()


def label_member(seq: int, sums: Sequence[float], tid: str) -> bytes:
    """The member text of a label-log entry (``sums`` flat: ``hi, lo`` per label field)."""
    return f"{seq:0{SEQ_DIGITS}x}|{sums_text(sums)}|{tid}".encode()


def known_member(time_ms: int, values: Sequence[float], tid: str) -> bytes:
    """The member text of a labelled-at index entry."""
    return f"{time_ms}|{_floats(values)}|{tid}".encode()


def parse_head(head: bytes) -> tuple[int, list[float]]:
    """``(seq, flat sums)`` of a member's head ``SEQ|S...`` (what the reader returns).

    >>> parse_head(b"00000000000a|3ff8000000000000,0000000000000000")
    (10, [1.5, 0.0])
    """
    return int(head[:SEQ_DIGITS], 16), parse_sums(head[SEQ_DIGITS + 1:])


def parse_known(member: bytes) -> tuple[int, list[float], str]:
    """``(event time ms, label values, transaction id)`` of a labelled-at index member."""
    time_text, values, tid = member.split(b"|", 2)
    return (int(time_text), [float(text) for text in values.split(b",")] if values else [],
            tid.decode())
