"""Keep the reference in step with the champion alias (model-events + a periodic re-read).

Following the events (a consumer group of this process's own, one re-read
per batch of events about our model, a periodic re-read that catches a
missed event and retries a failed load) is
:mod:`rtml_common.kafka.model_events`. Loading (MLflow download) happens here, off the
consuming thread; :meth:`DriftMonitor.install` hands the result over and the
monitor switches at its next batch. A failed load keeps the old reference.
A removed champion alias keeps the last reference too (the scorer keeps
scoring with what it has; the monitor keeps watching it) and is logged.
"""

from __future__ import annotations

import logging
import threading

from rtml_common.config import KafkaSettings
from rtml_common.kafka.model_events import ModelEventsFollower
from rtml_drift_monitor.metrics import DriftMetrics
from rtml_drift_monitor.monitor import DriftMonitor
from rtml_drift_monitor.reference import champion_version, load_champion_reference
from rtml_models.registry.base import ModelRegistry

logger = logging.getLogger(__name__)


class ReferenceWatcher(ModelEventsFollower):
    """Loads the champion's reference into ``monitor`` whenever the champion moves."""

    def __init__(self, monitor: DriftMonitor, registry: ModelRegistry, tracking_uri: str,
                 model_name: str, kafka: KafkaSettings, consumer_group: str,
                 refresh_interval_s: float, metrics: DriftMetrics) -> None:
        super().__init__(model_name, kafka, consumer_group, refresh_interval_s,
                         refresh_thread_name="reference-refresh")
        self.monitor = monitor
        self.registry = registry
        self.tracking_uri = tracking_uri
        self.metrics = metrics
        self.reloads = 0
        self.failed = 0
        self._refresh_lock = threading.Lock()
        self._last_problem: str | None = None

    def _problem(self, message: str) -> None:
        if message != self._last_problem:  # said once, not every refresh interval
            logger.warning("%s", message)
        self._last_problem = message

    def refresh(self, why: str) -> bool:
        """Load the champion's reference if it changed; True if one is installed afterwards."""
        with self._refresh_lock:
            try:
                version = champion_version(self.registry, self.model_name)
            except Exception as exc:  # registry unreachable: keep what we have, retry later
                self._problem(f"cannot read the {self.model_name} champion alias: {exc!r}")
                return self.monitor.version is not None
            if version is None:
                self._problem(f"{self.model_name} has no champion alias yet; waiting for one "
                              f"(keeping {self.monitor.version or 'no reference'})")
                return self.monitor.version is not None
            if version == self.monitor.version:
                return True
            try:
                champion = load_champion_reference(self.registry, self.tracking_uri,
                                                   self.model_name, version)
            except Exception as exc:  # a version without a reference: say so, keep the old one
                self.failed += 1
                self.metrics.reloads.add(1, {"outcome": "failed"})
                self._problem(f"cannot load the reference of {self.model_name} v{version} "
                              f"(after {why}): {exc}")
                return self.monitor.version is not None
            self._last_problem = None
            self.monitor.install(champion)
            self.reloads += 1
            self.metrics.reloads.add(1, {"outcome": "loaded"})
            logger.info("after %s: watching %s", why, champion.describe())
            return True

    def wait_until_loaded(self, stop: threading.Event, retry_s: float = 2.0) -> bool:
        """Refresh until a reference is installed (or ``stop``); False if stopped first."""
        while not stop.is_set():
            if self.refresh("start-up"):
                return True
            stop.wait(retry_s)
        return False
