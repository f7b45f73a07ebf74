"""Per-entity prefix logs: online state that answers any window at any request time.

The decision API must compute a transaction's window features *at the
request's time* ``t`` with the definitions' exact meaning — ``(t - n, t]``, or
``(t - (n + d), t - d]`` with the labels known by ``t`` — whatever the
entity's activity. Storing "the values as of the entity's newest event" (what
the online store held so far) cannot do that: the newest event is hours old,
expired events still count and the request itself is missing. Storing raw
events can, but a busy merchant's 30-day window would cost a million reads.

A prefix log stores, per entity, one *entry* per event in ``(time, id)``
order with the running totals up to and including it:

* ``seq`` — how many events the entity has had (counting trimmed ones), so a
  window's count is ``seq(b) - seq(a)`` where ``seq(x)`` is the ``seq`` of the
  last entry at or before ``x``;
* for each summed field, the running sum as a double-double ``(hi, lo)``
  (Knuth's TwoSum): the difference of two running sums is then the window's
  sum to about one rounding, however large the entity's lifetime total grows
  (a plain float running sum would lose ~1e-16 of the lifetime total);
* for each min / max field, a backward sparse table: ``ext[k]`` is the
  extreme of the ``2**k`` events ending at this entry, so any window's
  extreme is the combination of two entries (``k = floor(log2 m)`` for a
  window of ``m`` events).

Any window is therefore answered from O(1) entries found by time (a floor
search) or by rank: O(log N) work and a bounded number of bytes for an
entity of any size. In Redis each log is a sorted set scored by time (the
floor search is ``ZRANGE ... BYSCORE REV LIMIT 0 1``); this module is the
reference the stores and the request path are tested against.

Labels live in their own log (:class:`LabelLog`): only labelled events whose
first label has a non-zero value, in ``(event time, id)`` order with running
sums — so a label-delayed window's fraud count is again a difference — plus
an index by ``labeled_at`` to take out the labels not yet known at ``t``
(none, for a live request: labels in the store were known before it).

Trimming keeps the *anchor*: the last entry at or before the cut-off stays,
so every boundary at or after the cut-off still finds its floor entry.

>>> log = EventLog(sum_fields=("amount",), extreme_fields=(("amount", "max"),))
>>> for tid, time_ms, amount in [("a", 1_000, 10.0), ("b", 2_000, 30.0), ("c", 3_000, 20.0)]:
...     _ = log.add(tid, time_ms, {"amount": amount})
>>> log.count(1_000, 3_000)      # events in (1000, 3000]
2
>>> log.total("amount", 0, 3_000)
60.0
>>> log.extreme("amount", "max", 2_000, 3_000)
20.0
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Extreme = Literal["min", "max"]


class OutOfRange(LookupError):
    """A boundary lies before what the log still holds (trimmed): the answer is unknown."""


def two_sum(a: float, b: float) -> tuple[float, float]:
    """``a + b`` as ``(s, e)`` with ``s + e`` exactly the real sum (Knuth)."""
    s = a + b
    bp = s - a
    return s, (a - (s - bp)) + (b - bp)


def dd_add(hi: float, lo: float, value: float) -> tuple[float, float]:
    """A double-double running sum plus one value."""
    s, e = two_sum(hi, value)
    e += lo
    hi = s + e
    return hi, e - (hi - s)


def dd_difference(hi1: float, lo1: float, hi2: float, lo2: float) -> float:
    """``(hi1 + lo1) - (hi2 + lo2)`` rounded once to a float (near-correctly)."""
    s, e = two_sum(hi1, -hi2)
    return s + (e + (lo1 - lo2))


_PICK = {"min": min, "max": max}


@dataclass(slots=True)
class _Entry:
    time_ms: int
    tid: str
    seq: int
    values: dict[str, float]
    #: field -> running double-double sum (hi, lo) including this entry.
    sums: dict[str, tuple[float, float]]
    #: (field, kind) -> extremes of the 2**k events ending here, k = 0, 1, ...
    extremes: dict[tuple[str, str], list[float]]


@dataclass
class EventLog:
    """One entity's events as a prefix log (see the module docstring)."""

    sum_fields: Sequence[str] = ()
    extreme_fields: Sequence[tuple[str, Extreme]] = ()
    entries: list[_Entry] = field(default_factory=list)
    #: Events trimmed away (the first entry's seq is ``trimmed + 1``).
    trimmed: int = 0

    def _key(self, index: int) -> tuple[int, str]:
        entry = self.entries[index]
        return entry.time_ms, entry.tid

    def add(self, tid: str, time_ms: int, values: Mapping[str, float]) -> bool:
        """Insert an event in ``(time, id)`` order; False if it is already present.

        An event older than the newest rewrites the running totals after it
        (as many entries as arrived after it: a late event's cost).
        """
        keys = [(e.time_ms, e.tid) for e in self.entries]
        position = bisect_left(keys, (time_ms, tid))
        if position < len(keys) and keys[position] == (time_ms, tid):
            return False
        if position == 0 and self.trimmed:
            raise OutOfRange(f"event at {time_ms} is before the log's anchor")
        self.entries.insert(position, _Entry(time_ms, tid, 0, dict(values), {}, {}))
        for index in range(position, len(self.entries)):
            self._recompute(index)
        return True

    def _recompute(self, index: int) -> None:
        entry = self.entries[index]
        previous = self.entries[index - 1] if index else None
        entry.seq = previous.seq + 1 if previous else self.trimmed + 1
        for name in self.sum_fields:
            hi, lo = previous.sums[name] if previous else (0.0, 0.0)
            entry.sums[name] = dd_add(hi, lo, entry.values[name])
        for name, kind in self.extreme_fields:
            pick = _PICK[kind]
            levels = [entry.values[name]]
            step = 1
            # ext[k] = pick(ext[k-1] here, ext[k-1] of the entry 2**(k-1) back)
            while index - step >= 0:
                back = self.entries[index - step].extremes[name, kind]
                if len(back) < len(levels):
                    break
                levels.append(pick(levels[-1], back[len(levels) - 1]))
                step *= 2
            entry.extremes[name, kind] = levels

    def trim(self, cutoff_ms: int) -> int:
        """Drop entries before the last one at or before ``cutoff_ms`` (the anchor).

        Returns how many were dropped."""
        floor = bisect_right([e.time_ms for e in self.entries], cutoff_ms) - 1
        if floor <= 0:
            return 0
        del self.entries[:floor]
        self.trimmed += floor
        return floor

    def floor_index(self, time_ms: int) -> int:
        """Index of the last entry at or before ``time_ms``; -1 if none and nothing was trimmed."""
        index = bisect_right([e.time_ms for e in self.entries], time_ms) - 1
        if index < 0 and self.trimmed:
            raise OutOfRange(f"{time_ms} is before the log's anchor")
        return index

    def seq_at(self, time_ms: int) -> int:
        """How many of the entity's events happened at or before ``time_ms``."""
        index = self.floor_index(time_ms)
        return self.entries[index].seq if index >= 0 else 0

    def count(self, after_ms: int, until_ms: int) -> int:
        """Events in ``(after_ms, until_ms]``."""
        return self.seq_at(until_ms) - self.seq_at(after_ms)

    def total(self, name: str, after_ms: int, until_ms: int) -> float:
        """Sum of ``name`` over the events in ``(after_ms, until_ms]``."""
        upper, lower = self.floor_index(until_ms), self.floor_index(after_ms)
        if upper <= lower:
            return 0.0
        hi1, lo1 = self.entries[upper].sums[name]
        hi2, lo2 = self.entries[lower].sums[name] if lower >= 0 else (0.0, 0.0)
        return dd_difference(hi1, lo1, hi2, lo2)

    def extreme(self, name: str, kind: Extreme, after_ms: int, until_ms: int) -> float | None:
        """min / max of ``name`` over ``(after_ms, until_ms]``; None for an empty window."""
        upper, lower = self.floor_index(until_ms), self.floor_index(after_ms)
        size = upper - lower
        if size <= 0:
            return None
        level = size.bit_length() - 1
        pick = _PICK[kind]
        return pick(self.entries[upper].extremes[name, kind][level],
                    self.entries[lower + (1 << level)].extremes[name, kind][level])

    def has(self, tid: str, time_ms: int) -> bool:
        """Whether the event ``(time_ms, tid)`` is in the log."""
        keys = [(e.time_ms, e.tid) for e in self.entries]
        position = bisect_left(keys, (time_ms, tid))
        return position < len(keys) and keys[position] == (time_ms, tid)


@dataclass(slots=True)
class _Label:
    time_ms: int  # the labelled event's time
    tid: str
    labeled_at_ms: int
    values: dict[str, float]
    sums: dict[str, tuple[float, float]]


@dataclass
class LabelLog:
    """One entity's labelled events with a non-zero label value, as a prefix log.

    Callers add a label only when it is the transaction's *first* label (the
    definitions' rule) and the transaction is in the entity's :class:`EventLog`
    (the batch engine joins labels to known transactions only).
    """

    fields: Sequence[str] = ("is_fraud",)
    entries: list[_Label] = field(default_factory=list)
    trimmed: bool = False

    def add(self, tid: str, time_ms: int, labeled_at_ms: int, values: Mapping[str, float]) -> bool:
        """Record a first label; False if the transaction already has one here or it is all zero."""
        if not any(values.get(name, 0.0) for name in self.fields):
            return False
        keys = [(e.time_ms, e.tid) for e in self.entries]
        position = bisect_left(keys, (time_ms, tid))
        if position < len(keys) and keys[position] == (time_ms, tid):
            return False
        own = {name: float(values.get(name, 0.0)) for name in self.fields}
        self.entries.insert(position, _Label(time_ms, tid, labeled_at_ms, own, {}))
        for index in range(position, len(self.entries)):
            previous = self.entries[index - 1] if index else None
            for name in self.fields:
                hi, lo = previous.sums[name] if previous else (0.0, 0.0)
                self.entries[index].sums[name] = dd_add(hi, lo, self.entries[index].values[name])
        return True

    def trim(self, cutoff_ms: int) -> int:
        """Drop labels of events before ``cutoff_ms`` except the anchor; return how many."""
        floor = bisect_right([e.time_ms for e in self.entries], cutoff_ms) - 1
        if floor <= 0:
            return 0
        del self.entries[:floor]
        self.trimmed = True
        return floor

    def known_total(self, name: str, after_ms: int, until_ms: int, known_by_ms: int) -> float:
        """Sum of label ``name`` over events in ``(after_ms, until_ms]`` known by ``known_by_ms``.

        The running sums count every stored label; the labels stored but not
        yet known at ``known_by_ms`` (a request older than the store's state;
        none for a live request) are found through the ``labeled_at`` index
        and taken out one by one.
        """
        times = [e.time_ms for e in self.entries]
        if self.trimmed and times and after_ms < times[0]:
            raise OutOfRange(f"{after_ms} is before the label log's anchor")
        upper, lower = bisect_right(times, until_ms) - 1, bisect_right(times, after_ms) - 1
        if upper <= lower:
            return 0.0
        hi1, lo1 = self.entries[upper].sums[name]
        hi2, lo2 = self.entries[lower].sums[name] if lower >= 0 else (0.0, 0.0)
        result = dd_difference(hi1, lo1, hi2, lo2)
        by_known = sorted((e.labeled_at_ms, e.time_ms, e.values[name]) for e in self.entries)
        later = by_known[bisect_right(by_known, (known_by_ms, math.inf, math.inf)):]
        unknown = [value for _, time_ms, value in later if after_ms < time_ms <= until_ms]
        return result - math.fsum(unknown) if unknown else result
