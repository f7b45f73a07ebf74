"""Hot model reload: follow ``model-events`` and re-read the aliases periodically.

Following the events (a consumer group of this process's own, one refresh
per batch, a periodic re-read that also retries a failed reload) is
:mod:`rtml_common.kafka.model_events`, shared with the scorer and the drift
monitor. Loading happens here, off the request path; requests keep the
snapshot they started with.
"""

from __future__ import annotations

import logging

from rtml_common.config import KafkaSettings
from rtml_common.kafka.model_events import ModelEventsFollower
from rtml_models.serving import ServingModels

logger = logging.getLogger(__name__)


class ModelWatcher(ModelEventsFollower):
    """Keeps ``serving`` in step with the registry, on two daemon threads."""

    def __init__(self, serving: ServingModels, kafka: KafkaSettings,
                 refresh_interval_s: float = 30.0, group_prefix: str = "rtml-decision") -> None:
        super().__init__(serving.name, kafka, group_prefix, refresh_interval_s)
        self.serving = serving

    def refresh(self, why: str) -> bool:
        """Re-read aliases; False (logged) if the reload failed and the old snapshot stays."""
        try:
            self.serving.refresh()
        except Exception as error:  # MLflow down, corrupt artifact: keep serving the old one
            logger.warning("model reload (%s) failed, still serving %s: %r", why,
                           self.serving.current.describe(), error)
            return False
        return True
