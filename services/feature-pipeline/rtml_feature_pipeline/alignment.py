"""Keep input partitions together in event time while a worker catches up.

Reading a backlog, the client hands over long runs of one partition (with the
local broker, whole partitions: 25-75 batches of 1,000 records in a row), so
one partition can be weeks of event time ahead of another. Results stay right
— the watermark is the slowest partition's — but everything the fast one
emitted stays revisable until the slow one catches up, and each of the slow
one's transactions then revises the fast one's vectors that its terminal
windows reach: measured, one benchmark run in four made 825,000 revisions for
300,000 transactions and ran 2.5x slower.

:class:`EventTimeAlignment` pauses a partition once its event time is more
than ``max_lead_ms`` ahead of the slowest partition's, and resumes it when the
others have caught up (or when nothing else has records: an exhausted
partition must not hold the rest back). The client drops what it had fetched
of a paused partition and resumes right after the last record handed over, so
nothing is lost or repeated.

A partition that has delivered nothing yet (an expected watermark source with
no time) is the dangerous case: at start-up the client serves whole partitions
one after another (measured: one ``labels`` partition 28 days in before any
``transactions`` partition delivered), and a ``transactions`` partition still
silent while another runs weeks ahead revises nearly every vector the other
emitted once it is read (one run in about ten: 535,000 revisions for 300,000
transactions, 11.6k tx/s). While one is silent, the others are held within
``max_lead_ms`` of the lowest event time seen so far (where the data starts),
so the client has nothing else to fetch; if it stays silent through
``silence_grace_s`` of idle polls it is empty, and holds nothing back until
it delivers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from rtml_features.stream import StreamingFeatureComputer


class PausableConsumer(Protocol):
    """What the alignment needs of a consumer loop (``ConsumerLoop``)."""

    def pause(self, partitions: list[tuple[str, int]]) -> None: ...

    def resume(self, partitions: list[tuple[str, int]]) -> None: ...


class EventTimeAlignment:
    """Pauses partitions that run ahead of the slowest by more than ``max_lead_ms``."""

    def __init__(self, consumer: PausableConsumer, computer: StreamingFeatureComputer,
                 max_lead_ms: int, silence_grace_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_lead_ms <= 0:
            raise ValueError("max_lead_ms must be positive")
        self.consumer = consumer
        self.computer = computer
        self.max_lead_ms = max_lead_ms
        self.silence_grace_s = silence_grace_s
        self.clock = clock
        self.paused: set[tuple[str, int]] = set()
        self.pauses = 0
        #: The lowest event time any partition has shown: where a silent one likely starts.
        self.floor_ms: int | None = None
        #: Silent sources found empty (idle through the grace period): not waited for.
        self.empty: set[str] = set()
        self._idle_since: float | None = None

    def after_batch(self) -> None:
        """Pause partitions now too far ahead; resume those the others caught up with."""
        self._idle_since = None
        times = {source: at for source, at in self.computer.source_times.items()
                 if at is not None}
        if not times:
            return
        slowest = min(times.values())
        if self.floor_ms is None or slowest < self.floor_ms:
            self.floor_ms = slowest
        if self._silent():
            reference = self.floor_ms  # a silent partition may hold the oldest events
        elif len(times) < 2:
            return
        else:
            reference = slowest
        limit = reference + self.max_lead_ms
        ahead = {_partition(source) for source, at in times.items() if at > limit}
        to_resume = self.paused - ahead
        if ahead:  # all of them, every time: a rebalance may have resumed one
            self.pauses += len(ahead - self.paused)
            self.consumer.pause(sorted(ahead))
        if to_resume:
            self.consumer.resume(sorted(to_resume))
        self.paused = ahead

    def on_idle(self) -> None:
        """Nothing to read: resume everything (the slowest partition may be exhausted) —
        once silent partitions have had ``silence_grace_s`` to deliver."""
        silent = self._silent()
        if silent:
            now = self.clock()
            if self._idle_since is None:
                self._idle_since = now
            if now - self._idle_since < self.silence_grace_s:
                return
            self.empty.update(silent)
        self._idle_since = None
        if self.paused:
            self.consumer.resume(sorted(self.paused))
            self.paused = set()

    def _silent(self) -> list[str]:
        """Expected sources that have delivered nothing, unless found empty."""
        return [source for source, at in self.computer.source_times.items()
                if at is None and source not in self.empty]


def _partition(source: str) -> tuple[str, int]:
    """The (topic, partition) of a watermark source name ``topic:partition``."""
    topic, _, partition = source.rpartition(":")
    return topic, int(partition)
