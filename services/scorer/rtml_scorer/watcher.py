"""Hot reload: follow ``model-events`` (and a periodic re-read) on a side thread.

Why a side thread with its own consumer group, not the scoring group:
``model-events`` has one partition, and in a shared group only one scorer
process would own it — the others would never reload. Each process
therefore reads it under a group of its own (``<group>-models-<random>``),
from the earliest offset: the local broker's "latest" offsets are unreliable
(``INFRA.md``), and replaying old events only costs one alias re-read per
batch of events, because a batch triggers a single :meth:`ServingModels.refresh`.

Why the swap is safe: ``refresh`` loads new versions first and then
replaces :attr:`ServingModels.current` in one assignment; the scoring loop
reads ``current`` once per batch. So a reload never drops a record, never
scores one twice, and never mixes versions inside a batch — the switch
happens at a batch boundary and every output names the version that
scored it. Loading (MLflow download, verification) happens here, off the
scoring thread, so the champion keeps scoring with the old version meanwhile.

A failed reload (MLflow down, a corrupt artifact) leaves the old snapshot
serving; the periodic refresh retries it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from rtml_common.config import KafkaSettings
from rtml_common.events import Event, ModelEvent, utcnow
from rtml_common.kafka.consumer import ConsumerLoop, Record
from rtml_common.topics import spec_for_event
from rtml_models.serving import ServingModels
from rtml_scorer.guard import ShadowGuard
from rtml_scorer.metrics import ScorerMetrics

logger = logging.getLogger(__name__)

MODEL_EVENTS_TOPIC = spec_for_event(ModelEvent).name


class ModelWatcher:
    """Keeps ``serving`` in step with the registry; re-attaches shadows named by events."""

    def __init__(self, serving: ServingModels, guard: ShadowGuard, metrics: ScorerMetrics,
                 kafka: KafkaSettings, consumer_group: str, refresh_interval_s: float) -> None:
        self.serving = serving
        self.guard = guard
        self.metrics = metrics
        self.refresh_interval_s = refresh_interval_s
        self.group_id = f"{consumer_group}-models-{uuid.uuid4().hex[:10]}"
        topics: dict[str, type[Event]] = {MODEL_EVENTS_TOPIC: ModelEvent}
        self.loop = ConsumerLoop(topics, self.group_id, self.handle, kafka)
        self.started_at = utcnow()
        self.events_seen = 0
        self.reloads = 0
        self.failed_refreshes = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def handle(self, records: list[Record[Any]]) -> None:
        """One refresh per batch of events about our model; never raises (see module doc)."""
        events: list[ModelEvent] = [r.value for r in records
                                    if r.value.model_name == self.serving.name]
        if not events:
            return
        self.events_seen += len(events)
        self.refresh("model-events")
        for event in events:
            if event.occurred_at < self.started_at:
                continue  # history replayed at start-up: not "the next event" for a shadow
            if self.guard.reattach(alias=event.alias, version=event.version):
                logger.info("re-attached shadows named by %s (%s@%s)", event.event_id,
                            event.alias, event.version)

    def refresh(self, why: str) -> bool:
        """Re-read aliases and swap the snapshot if it changed; False if the reload failed."""
        before = self.serving.current.describe()
        try:
            after = self.serving.refresh().describe()
        except Exception as exc:  # the old snapshot keeps serving; retried periodically
            self.failed_refreshes += 1
            logger.warning("reload after %s failed, still serving %s: %r", why, before, exc)
            return False
        if after != before:
            self.reloads += 1
            self.metrics.reloads.add(1)
            logger.info("reloaded after %s: %s (was %s)", why, after, before)
        return True

    def _periodic(self) -> None:
        while not self._stop.wait(self.refresh_interval_s):
            self.refresh("periodic re-read")

    def start(self) -> None:
        """Start the model-events consumer and the periodic re-read (daemon threads)."""
        self._threads = [
            threading.Thread(target=self.loop.run, name="model-events", daemon=True),
            threading.Thread(target=self._periodic, name="model-refresh", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self.loop.stop()
        for thread in self._threads:
            thread.join(timeout_s)
