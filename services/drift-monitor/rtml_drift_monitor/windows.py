"""Event-time windows of binned values: tumbling panes, sliding sums, watermark closing.

Why event time, not event counts: the simulated traffic (like real card
traffic) has a strong time-of-day cycle, so a window of a few thousand events
is "the night" or "the afternoon" and would differ from a training reference
that covers whole days. Windows here are spans of event time:

* **tumbling** windows ``[k * size, (k + 1) * size)`` in epoch milliseconds
  (with ``size`` one day: UTC calendar days);
* **sliding** windows of ``m`` consecutive tumbling windows (``m * size``
  long, one per hop = ``size``): the window ending with tumbling window ``k``
  spans ``k - m + 1 .. k``.

Only histograms are kept, never values: each tumbling window ("pane") holds
one count per (subject, bin) in the reference's bins, and a sliding window is
the sum of its panes. So memory is ``m`` panes of ``subjects x bins`` counts
whatever the traffic, and ``observe`` is a few vectorized numpy calls per
batch (one ``searchsorted`` per subject, one ``bincount``).

Closing (the watermark): each *source* (a Kafka partition) reports how far
its event time got; the watermark is the minimum over the *active* sources
(the service passes its assigned partitions that are not idle; by default
every source seen), minus the allowed lateness, so a partition lagging behind
in a catch-up does not make its events look late, and an active partition
that has delivered nothing yet holds every window open. Every pane whose end is at or before the
watermark closes, in order, with the sliding window ending with it. An event
for an already closed pane is *late*: counted, not added.

Completeness: the monitor cannot know whether it saw the pane in which its
stream started from that pane's beginning, so that first pane and every
window containing it are closed *partial* and not evaluated; panes before it
are late. A restart resumes from a checkpoint (:meth:`WindowedHistograms.snapshot`,
see :mod:`rtml_drift_monitor.checkpoint`), whose first pane is the original
one: the windows open at the crash are completed, not made partial.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from rtml_monitoring.reference import Distribution

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class WindowKind(StrEnum):
    """The two window shapes (label value in metrics)."""

    TUMBLING = "tumbling"
    SLIDING = "sliding"


class Skip(StrEnum):
    """Why a closed window was not evaluated."""

    #: The window contains the pane the stream started in (see module doc).
    PARTIAL = "partial"
    #: Fewer than ``min_events`` values (for every subject).
    TOO_FEW_EVENTS = "too_few_events"


@dataclass(frozen=True)
class WindowSpec:
    """Window geometry and closing rules, all in event-time milliseconds."""

    size_ms: int
    #: Tumbling windows per sliding window; 0 = no sliding windows.
    sliding_panes: int = 0
    lateness_ms: int = 0
    min_events: int = 1

    def __post_init__(self) -> None:
        if self.size_ms <= 0:
            raise ValueError("size_ms must be > 0")
        if self.sliding_panes < 0 or self.lateness_ms < 0 or self.min_events < 1:
            raise ValueError("sliding_panes and lateness_ms must be >= 0, min_events >= 1")

    @classmethod
    def from_seconds(cls, window_s: int, sliding_window_s: int = 0, lateness_s: int = 0,
                     min_events: int = 1) -> WindowSpec:
        if sliding_window_s % window_s:
            raise ValueError("sliding_window_s must be a multiple of window_s")
        return cls(window_s * 1000, sliding_window_s // window_s, lateness_s * 1000, min_events)


@dataclass(frozen=True)
class Window:
    """One window: ``[start_ms, end_ms)`` in epoch milliseconds."""

    kind: WindowKind
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class ClosedWindow:
    """A window the watermark passed, with its histograms (``counts[s]`` for subject ``s``)."""

    window: Window
    #: Per subject, the counts in that subject's reference bins (lengths differ).
    counts: tuple[I64, ...]
    #: Values per subject (NaN / missing values excluded).
    n: tuple[int, ...]
    #: Rows (events) in the window.
    events: int
    skip: Skip | None


class WindowedHistograms:
    """Bins each subject's values in its reference bins and sums them per event-time window.

    ``subjects`` names the columns of the value matrices given to
    :meth:`observe`, ``distributions`` holds their reference binning (edges).
    """

    def __init__(self, subjects: Sequence[str], distributions: Mapping[str, Distribution],
                 spec: WindowSpec) -> None:
        if not subjects:
            raise ValueError("no subjects to watch")
        self.subjects = tuple(subjects)
        self.spec = spec
        self._edges = [np.asarray(distributions[s].edges, dtype=np.float64) for s in subjects]
        self._bins = [len(e) + 1 for e in self._edges]
        #: Width of one subject's slot: its bins, padded, plus one "missing" column.
        self._width = max(self._bins) + 1
        self._offsets = np.arange(len(subjects), dtype=np.int64) * self._width
        self._panes: dict[int, I64] = {}
        self._pane_rows: dict[int, int] = {}
        self._first_pane: int | None = None
        #: Panes <= this are closed.
        self._closed_through: int | None = None
        self._source_max: dict[Hashable, int] = {}
        self.late = 0
        self.observed = 0

    @property
    def first_pane(self) -> int | None:
        return self._first_pane

    def watermark_ms(self, active: Collection[Hashable] | None = None) -> int | None:
        """Event time up to which every window is complete (None: not known yet).

        ``active``: the sources that must have reported (a consumer's assigned,
        non-idle partitions); one that has not yet holds the watermark back.
        None: every source seen so far.
        """
        if active is None:
            reported = list(self._source_max.values())
        else:
            if any(source not in self._source_max for source in active):
                return None
            reported = [self._source_max[source] for source in active]
        if not reported:
            return None
        return min(reported) - self.spec.lateness_ms

    def bin_matrix(self, values: F64) -> I64:
        """Flat slot index per (row, subject): subject offset + bin, or the missing column."""
        index = np.empty(values.shape, dtype=np.int64)
        for s, edges in enumerate(self._edges):
            column = values[:, s]
            bins = np.searchsorted(edges, column, side="left")
            index[:, s] = np.where(np.isnan(column), self._width - 1, bins)
        index += self._offsets
        return index

    def observe(self, times_ms: npt.ArrayLike, values: npt.ArrayLike,
                sources: Hashable | list[Hashable] = None,
                active: Collection[Hashable] | None = None) -> list[ClosedWindow]:
        """Add events (row ``i`` of ``values`` at ``times_ms[i]``); return the windows closed.

        ``sources`` says where the events came from, for the watermark: one
        source for all rows, or a list with one per row (a Kafka partition). Every
        source's progress is taken into account before anything closes, so a
        batch is one step. Events need not be sorted. ``active``: see
        :meth:`watermark_ms`.
        """
        times = np.asarray(times_ms, dtype=np.int64)
        matrix = np.asarray(values, dtype=np.float64).reshape(len(times), len(self.subjects))
        if not len(times):
            return []
        panes = np.floor_divide(times, self.spec.size_ms)
        if self._first_pane is None:
            self._first_pane = int(panes.min())
            self._closed_through = self._first_pane - 1
        assert self._closed_through is not None
        on_time = panes > self._closed_through
        if not on_time.all():
            self.late += int((~on_time).sum())
            panes, matrix = panes[on_time], matrix[on_time]
        self._advance_sources(times, sources)
        if len(panes):
            self.observed += len(panes)
            self._accumulate(panes, matrix)
        return self._close_ready(active)

    def _advance_sources(self, times: I64, sources: Hashable | list[Hashable]) -> None:
        if isinstance(sources, list):
            if len(sources) != len(times):
                raise ValueError(f"{len(sources)} sources for {len(times)} events")
            latest: dict[Hashable, int] = {}
            for source, time in zip(sources, times.tolist(), strict=True):
                if time > latest.get(source, time - 1):
                    latest[source] = time
        else:
            latest = {sources: int(times.max())}
        for source, time in latest.items():
            self._source_max[source] = max(self._source_max.get(source, time), time)

    def _accumulate(self, panes: I64, matrix: F64) -> None:
        unique, local = np.unique(panes, return_inverse=True)
        slots = len(self.subjects) * self._width
        flat = (self.bin_matrix(matrix) + (local.astype(np.int64) * slots)[:, None]).ravel()
        counts = np.bincount(flat, minlength=len(unique) * slots).reshape(len(unique), slots)
        rows = np.bincount(local, minlength=len(unique))
        for i, pane in enumerate(unique.tolist()):
            if pane in self._panes:
                self._panes[pane] += counts[i]
                self._pane_rows[pane] += int(rows[i])
            else:
                self._panes[pane] = counts[i].astype(np.int64)
                self._pane_rows[pane] = int(rows[i])

    # -- checkpoints -----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole window state as plain JSON values (for a checkpoint; never pickle)."""
        return {
            "subjects": list(self.subjects),
            "width": self._width,
            "panes": [[pane, counts.tolist(), self._pane_rows[pane]]
                      for pane, counts in sorted(self._panes.items())],
            "first_pane": self._first_pane,
            "closed_through": self._closed_through,
            # In a fixed order: two snapshots of the same state compare equal.
            "sources": [[list(source) if isinstance(source, tuple) else source, time]
                        for source, time in sorted(self._source_max.items(),
                                                   key=lambda item: repr(item[0]))],
            "late": self.late,
            "observed": self.observed,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load a :meth:`snapshot` taken with the same subjects and reference bins."""
        if list(state["subjects"]) != list(self.subjects) or state["width"] != self._width:
            raise ValueError("the checkpoint's subjects or bins differ from this reference's")
        slots = len(self.subjects) * self._width
        panes: dict[int, I64] = {}
        rows: dict[int, int] = {}
        for pane, counts, n in state["panes"]:
            if len(counts) != slots:
                raise ValueError(f"pane {pane} has {len(counts)} slots, expected {slots}")
            panes[int(pane)] = np.asarray(counts, dtype=np.int64)
            rows[int(pane)] = int(n)
        self._panes, self._pane_rows = panes, rows
        self._first_pane = state["first_pane"]
        self._closed_through = state["closed_through"]
        self._source_max = {tuple(source) if isinstance(source, list) else source: int(time)
                            for source, time in state["sources"]}
        self.late = int(state["late"])
        self.observed = int(state["observed"])

    def _close_ready(self, active: Collection[Hashable] | None) -> list[ClosedWindow]:
        watermark = self.watermark_ms(active)
        if watermark is None or self._closed_through is None:
            return []
        last = watermark // self.spec.size_ms - 1  # panes ending at or before the watermark
        if last <= self._closed_through:
            return []
        span = max(self.spec.sliding_panes, 1)
        # Panes to close: those holding data and those ending a sliding window over data
        # (a long gap in event time is not walked pane by pane).
        candidates = sorted({pane + j for pane in self._panes for j in range(span)
                             if self._closed_through < pane + j <= last})
        closed: list[ClosedWindow] = []
        for pane in candidates:
            closed.append(self._tumbling(pane))
            if self.spec.sliding_panes:
                closed.append(self._sliding(pane))
        self._closed_through = last
        keep_from = last - span + 2  # the oldest pane a future sliding window still needs
        for pane in [p for p in self._panes if p < keep_from]:
            del self._panes[pane]
            del self._pane_rows[pane]
        return closed

    def _result(self, kind: WindowKind, first: int, last: int) -> ClosedWindow:
        slots = len(self.subjects) * self._width
        total = np.zeros(slots, dtype=np.int64)
        events = 0
        for pane in range(first, last + 1):
            if pane in self._panes:
                total += self._panes[pane]
                events += self._pane_rows[pane]
        per_subject = total.reshape(len(self.subjects), self._width)
        counts = tuple(per_subject[s, :bins].copy() for s, bins in enumerate(self._bins))
        n = tuple(int(c.sum()) for c in counts)
        assert self._first_pane is not None
        skip: Skip | None = None
        if first <= self._first_pane:
            skip = Skip.PARTIAL
        elif max(n) < self.spec.min_events:
            skip = Skip.TOO_FEW_EVENTS
        size = self.spec.size_ms
        return ClosedWindow(Window(kind, first * size, (last + 1) * size), counts, n, events,
                            skip)

    def _tumbling(self, pane: int) -> ClosedWindow:
        return self._result(WindowKind.TUMBLING, pane, pane)

    def _sliding(self, pane: int) -> ClosedWindow:
        return self._result(WindowKind.SLIDING, pane - self.spec.sliding_panes + 1, pane)
