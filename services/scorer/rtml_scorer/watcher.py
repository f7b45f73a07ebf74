"""Hot reload: follow ``model-events`` (and a periodic re-read) on a side thread.

Following the events (a consumer group of this process's own, one refresh
per batch, a periodic re-read) is :mod:`rtml_common.kafka.model_events`.

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

from rtml_common.config import KafkaSettings
from rtml_common.events import ModelEvent, utcnow
from rtml_common.kafka.model_events import ModelEventsFollower
from rtml_models.serving import ServingModels
from rtml_scorer.guard import ShadowGuard
from rtml_scorer.metrics import ScorerMetrics

logger = logging.getLogger(__name__)


class ModelWatcher(ModelEventsFollower):
    """Keeps ``serving`` in step with the registry; re-attaches shadows named by events."""

    def __init__(self, serving: ServingModels, guard: ShadowGuard, metrics: ScorerMetrics,
                 kafka: KafkaSettings, consumer_group: str, refresh_interval_s: float) -> None:
        super().__init__(serving.name, kafka, consumer_group, refresh_interval_s)
        self.serving = serving
        self.guard = guard
        self.metrics = metrics
        self.started_at = utcnow()
        self.reloads = 0
        self.failed_refreshes = 0

    def on_events(self, events: list[ModelEvent]) -> None:
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
