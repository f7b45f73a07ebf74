"""Event-time watermarks of one topic: how far every partition's events have arrived.

A decision at time ``t`` can be re-computed only once every transaction at or
before ``t`` that its windows count has been read, and every label known by
``t``. Kafka keeps order per partition only, so the watermark of a topic is the
*minimum* over its partitions of the newest event time each has delivered,
minus the allowed lateness (an event may arrive that much behind the newest
one of its partition: the feature pipeline accepts it too). A partition that
has not reported yet holds the watermark back — its events could still be
anywhere — unless it has been silent for ``idle_s`` (wall clock, counted from
its assignment if it never delivered): a partition with no traffic must not
stop every check forever. When every partition is idle the topic is drained
and the newest time seen is the watermark.

Times are epoch milliseconds; the clock is injectable for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Partition = tuple[str, int]


class TopicWatermark:
    """Per-partition newest event time of one topic, and the watermark they imply."""

    def __init__(self, topic: str, lateness_ms: int, idle_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.topic = topic
        self.lateness_ms = lateness_ms
        self.idle_s = idle_s
        self.clock = clock
        self.newest: dict[int, int] = {}
        self._last_delivery: dict[int, float] = {}
        self._assigned_at: dict[int, float] = {}
        #: The topic's assigned partitions (set by the service; None: the partitions seen).
        self.assigned: Callable[[], set[Partition]] | None = None

    def observe(self, partition: int, event_ms: int) -> None:
        """A record of ``partition`` with event time ``event_ms`` was read."""
        self._last_delivery[partition] = self.clock()
        if event_ms > self.newest.get(partition, event_ms - 1):
            self.newest[partition] = event_ms

    def delivered(self, partition: int) -> None:
        """``partition`` delivered something (even nothing usable): it is not idle."""
        self._last_delivery[partition] = self.clock()

    def _partitions(self) -> set[int]:
        if self.assigned is None:
            return set(self.newest)
        return {p for topic, p in self.assigned() if topic == self.topic}

    def active(self) -> set[int]:
        """Partitions that must report before the watermark moves (not idle)."""
        now = self.clock()
        active: set[int] = set()
        for partition in self._partitions():
            since = self._last_delivery.get(partition)
            if since is None:
                since = self._assigned_at.setdefault(partition, now)
            if now - since <= self.idle_s:
                active.add(partition)
        return active

    def value(self) -> int | None:
        """The watermark in epoch ms, or None while some active partition has no time yet."""
        if not self.newest:
            return None
        active = self.active()
        if not active:  # everything idle: drained, the newest time seen is complete
            return max(self.newest.values()) - self.lateness_ms
        times = [self.newest.get(p) for p in active]
        if any(t is None for t in times):
            return None
        return min(t for t in times if t is not None) - self.lateness_ms
