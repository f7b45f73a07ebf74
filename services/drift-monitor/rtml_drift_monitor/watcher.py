"""Keep the reference in step with the champion alias (model-events + a periodic re-read).

Like the scorer's watcher: ``model-events`` has one partition, so it is read
under a consumer group of this process's own (``<group>-models-<random>``)
from the earliest offset on a side thread; a batch of events about our model
triggers one alias re-read. A periodic re-read catches a missed event and
retries a failed load. Loading (MLflow download) happens here, off the
consuming thread; :meth:`DriftMonitor.install` hands the result over and the
monitor switches at its next batch. A failed load keeps the old reference.
A removed champion alias keeps the last reference too (the scorer keeps
scoring with what it has; the monitor keeps watching it) and is logged.
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
from rtml_drift_monitor.metrics import DriftMetrics
from rtml_drift_monitor.monitor import DriftMonitor
from rtml_drift_monitor.reference import champion_version, load_champion_reference
from rtml_models.registry.base import ModelRegistry

logger = logging.getLogger(__name__)

MODEL_EVENTS_TOPIC = spec_for_event(ModelEvent).name


class ReferenceWatcher:
    """Loads the champion's reference into ``monitor`` whenever the champion moves."""

    def __init__(self, monitor: DriftMonitor, registry: ModelRegistry, tracking_uri: str,
                 model_name: str, kafka: KafkaSettings, consumer_group: str,
                 refresh_interval_s: float, metrics: DriftMetrics) -> None:
        self.monitor = monitor
        self.registry = registry
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.metrics = metrics
        self.refresh_interval_s = refresh_interval_s
        self.group_id = f"{consumer_group}-models-{uuid.uuid4().hex[:10]}"
        topics: dict[str, type[Event]] = {MODEL_EVENTS_TOPIC: ModelEvent}
        self.loop = ConsumerLoop(topics, self.group_id, self.handle, kafka)
        self.reloads = 0
        self.failed = 0
        self._refresh_lock = threading.Lock()
        self._last_problem: str | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def handle(self, records: list[Record[Any]]) -> None:
        """One re-read per batch of events about our model; never raises."""
        if any(r.value.model_name == self.model_name for r in records):
            self.refresh("model-events")

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

    def _periodic(self) -> None:
        while not self._stop.wait(self.refresh_interval_s):
            self.refresh("periodic re-read")

    def start(self) -> None:
        """Start the model-events consumer and the periodic re-read (daemon threads)."""
        self._threads = [
            threading.Thread(target=self.loop.run, name="model-events", daemon=True),
            threading.Thread(target=self._periodic, name="reference-refresh", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self.loop.stop()
        for thread in self._threads:
            thread.join(timeout_s)
