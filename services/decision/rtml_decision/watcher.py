"""Hot model reload: follow ``model-events`` and re-read the aliases periodically.

Same design as the scorer's watcher (``rtml_scorer.watcher``; a shared one
in ``rtml_models`` is proposed to the lead): a consumer group of its own per
process (``model-events`` has one partition, a shared group would leave
other replicas deaf), one :meth:`ServingModels.refresh` per batch of events,
and a periodic refresh that also retries a failed reload. Loading happens
here, off the request path; requests keep the snapshot they started with.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from rtml_common.config import KafkaSettings
from rtml_common.events import Event, ModelEvent
from rtml_common.kafka.consumer import ConsumerLoop, Record
from rtml_common.topics import spec_for_event
from rtml_models.serving import ServingModels

logger = logging.getLogger(__name__)

MODEL_EVENTS_TOPIC = spec_for_event(ModelEvent).name


class ModelWatcher:
    """Keeps ``serving`` in step with the registry, on two daemon threads."""

    def __init__(self, serving: ServingModels, kafka: KafkaSettings,
                 refresh_interval_s: float = 30.0, group_prefix: str = "rtml-decision") -> None:
        self.serving = serving
        self.refresh_interval_s = refresh_interval_s
        topics: dict[str, type[Event]] = {MODEL_EVENTS_TOPIC: ModelEvent}
        self.loop = ConsumerLoop(topics, f"{group_prefix}-models-{uuid.uuid4().hex[:10]}",
                                 self.handle, kafka)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def handle(self, records: list[Record[Any]]) -> None:
        if any(r.value.model_name == self.serving.name for r in records):
            self.refresh("model-events")

    def refresh(self, why: str) -> bool:
        """Re-read aliases; False (logged) if the reload failed and the old snapshot stays."""
        try:
            self.serving.refresh()
        except Exception as error:  # MLflow down, corrupt artifact: keep serving the old one
            logger.warning("model reload (%s) failed, still serving %s: %r", why,
                           self.serving.current.describe(), error)
            return False
        return True

    def _periodic(self) -> None:
        while not self._stop.wait(self.refresh_interval_s):
            self.refresh("periodic")

    def start(self) -> None:
        for target, name in ((self.loop.run, "model-events"), (self._periodic, "model-refresh")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self.loop.stop()
        for thread in self._threads:
            thread.join(10)
