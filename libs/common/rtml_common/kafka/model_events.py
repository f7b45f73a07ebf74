"""Follow one model's registry changes: ``model-events`` on a side thread, plus a re-read.

Every service that serves or watches a model (scorer, decision API, drift
monitor) must notice an alias move without a restart. They share how:

* ``model-events`` has one partition, so in a shared consumer group only one
  replica would own it and the others would never hear of a change: each
  process reads it under a group of its own, ``<prefix>-models-<random>``,
  from the earliest offset (a broker's "latest" offset is not something to
  rely on, and replaying old events costs one re-read per batch).
* A batch of events about the model triggers **one** :meth:`refresh` (what a
  refresh does — reload models, a reference — is the subclass's job; it
  must not raise, and it runs on this side thread, never on the caller's
  hot path).
* A periodic :meth:`refresh` catches an event that was missed (the broker
  was down) and retries a refresh that failed.

Subclasses implement :meth:`refresh` and may override :meth:`on_events`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from abc import ABC, abstractmethod
from typing import Any

from rtml_common.config import KafkaSettings
from rtml_common.events import Event, ModelEvent
from rtml_common.kafka.consumer import ConsumerLoop, Record
from rtml_common.topics import spec_for_event

logger = logging.getLogger(__name__)

MODEL_EVENTS_TOPIC = spec_for_event(ModelEvent).name


class ModelEventsFollower(ABC):
    """Calls :meth:`refresh` when ``model_name`` changes in the registry; see the module doc."""

    def __init__(self, model_name: str, kafka: KafkaSettings, group_prefix: str,
                 refresh_interval_s: float, refresh_thread_name: str = "model-refresh") -> None:
        self.model_name = model_name
        self.refresh_interval_s = refresh_interval_s
        self.group_id = f"{group_prefix}-models-{uuid.uuid4().hex[:10]}"
        topics: dict[str, type[Event]] = {MODEL_EVENTS_TOPIC: ModelEvent}
        self.loop = ConsumerLoop(topics, self.group_id, self.handle, kafka)
        self.events_seen = 0
        self._refresh_thread_name = refresh_thread_name
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @abstractmethod
    def refresh(self, why: str) -> bool:
        """Bring the service in step with the registry; never raises (False: it failed)."""

    def on_events(self, events: list[ModelEvent]) -> None:  # noqa: B027 - optional hook
        """Called after the refresh a batch of this model's events triggered (default: no-op)."""

    def handle(self, records: list[Record[Any]]) -> None:
        """One refresh per batch of events about our model."""
        events: list[ModelEvent] = [r.value for r in records
                                    if r.value.model_name == self.model_name]
        if not events:
            return
        self.events_seen += len(events)
        self.refresh("model-events")
        self.on_events(events)

    def _periodic(self) -> None:
        while not self._stop.wait(self.refresh_interval_s):
            self.refresh("periodic re-read")

    def start(self) -> None:
        """Start the model-events consumer and the periodic re-read (daemon threads)."""
        self._threads = [
            threading.Thread(target=self.loop.run, name="model-events", daemon=True),
            threading.Thread(target=self._periodic, name=self._refresh_thread_name, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self.loop.stop()
        for thread in self._threads:
            thread.join(timeout_s)
