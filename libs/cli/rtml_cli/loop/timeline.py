"""What the loop did, in order: a watcher that reads the control topics as they fill.

The loop's milestones are all events on topics — ``drift-alerts``,
``retrain-requests`` and the registry's ``model-events`` — so the timeline
is read from there rather than from service logs: a milestone is on the
record only if a consumer of the platform could have seen it. Each entry
keeps the wall-clock time the watcher received it (to check the order in
which things happened) and the event itself (its own timestamps, and the
event time the services were at).

The watcher assigns every partition from offset 0 without a consumer group,
so it sees everything from the start of the run and commits nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from rtml_common.events import DriftAlert, Event, ModelEvent, RetrainRequest
from rtml_common.topics import spec_for_event

WATCHED: tuple[type[Event], ...] = (DriftAlert, RetrainRequest, ModelEvent)


@dataclass(frozen=True)
class Entry:
    """One milestone: when the watcher saw it, and the event (with its own timestamp)."""

    seen_at: datetime
    topic: str
    event: Event

    @property
    def happened_at(self) -> datetime:
        """When the producing service says it happened (its own wall clock).

        The order to check: the watcher may receive several topics in one poll,
        so its ``seen_at`` can invert two events made a microsecond apart.
        """
        event = self.event
        if isinstance(event, DriftAlert):
            return event.raised_at
        if isinstance(event, RetrainRequest):
            return event.requested_at
        if isinstance(event, ModelEvent):
            return event.occurred_at
        return self.seen_at

    def describe(self) -> str:
        event = self.event
        if isinstance(event, DriftAlert):
            return (f"drift alert: {event.subject} {event.metric} {event.value:.3f} > "
                    f"{event.threshold:g} in window {event.window_start:%m-%d %H:%M} .. "
                    f"{event.window_end:%m-%d %H:%M} (champion v{event.model_version})")
        if isinstance(event, RetrainRequest):
            span = (f" for data {event.data_start:%m-%d} .. {event.data_end:%m-%d}"
                    if event.data_start and event.data_end else "")
            return (f"retrain request {event.request_id[:12]}{span} "
                    f"({len(event.alert_ids)} alert(s))")
        if isinstance(event, ModelEvent):
            move = f" {event.alias} -> v{event.version}" if event.alias else f" v{event.version}"
            return f"model event {event.kind}{move} by {event.actor}"
        return type(event).__name__


class TimelineWatcher:
    """Background reader of the watched topics; see the module doc."""

    def __init__(self, bootstrap_servers: str, poll_s: float = 0.2) -> None:
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap_servers,
            "group.id": "rtml-loop-timeline",  # required by the client; never committed
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        })
        self._specs = {spec_for_event(t).name: t for t in WATCHED}
        self._poll_s = poll_s
        self._entries: list[Entry] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loop-timeline", daemon=True)
        self.errors: list[str] = []

    def start(self) -> TimelineWatcher:
        partitions: list[TopicPartition] = []
        for topic in self._specs:
            metadata = self._consumer.list_topics(topic, timeout=10).topics[topic]
            partitions += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
        self._consumer.assign(partitions)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(100, self._poll_s):
                if message.error():
                    self.errors.append(str(message.error()))
                    continue
                topic = message.topic() or ""
                try:
                    event = self._specs[topic].model_validate_json(message.value() or b"")
                except ValueError as exc:
                    self.errors.append(f"{topic}: {exc}")
                    continue
                with self._lock:
                    self._entries.append(Entry(datetime.now(UTC), topic, event))

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries)

    def first(self, match: Callable[[Event], bool]) -> Entry | None:
        """The earliest entry whose event satisfies ``match``."""
        return next((e for e in self.entries() if match(e.event)), None)

    def wait_for(self, match: Callable[[Event], bool], timeout_s: float,
                 alive: Callable[[], Any] | None = None) -> Entry | None:
        """The first matching entry, waiting up to ``timeout_s``; ``alive`` raises if a
        service died meanwhile (so a crash fails fast with its log, not with a timeout)."""
        deadline = time.monotonic() + timeout_s
        while True:
            entry = self.first(match)
            if entry is not None or time.monotonic() >= deadline:
                return entry
            if alive is not None:
                alive()
            time.sleep(0.25)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()
