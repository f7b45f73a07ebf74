"""Wiring: registry -> champion reference -> watcher -> the features/predictions consumer loop.

:func:`run` is what ``python -m rtml_drift_monitor`` calls, and what tests
call in-process. Start-up order:

1. load the champion's reference distributions, waiting (with a log line)
   while the model has no champion or its reference cannot be read:
   windows binned without a reference could not be compared with anything;
2. start the ``model-events`` watcher, so a champion move from now on swaps
   the reference;
3. join the consumer group on ``features`` + ``predictions`` and watch until
   stopped. SIGTERM/SIGINT (or ``stop``) finishes the in-flight batch,
   flushes the alerts, commits and leaves the group.

The window state is in memory and checkpointed to ``state_dir`` with the
offsets it covers (:mod:`rtml_drift_monitor.checkpoint`). A restart restores
the checkpoint of the same champion version and resumes every partition at
its offsets, so no record is counted twice or skipped and the windows open
at the crash are completed; alerts re-raised by the replayed tail carry the
same ids. Without a usable checkpoint it resumes at the group's committed
offsets in the middle of a window, which is then closed as partial and not
evaluated (see :mod:`rtml_drift_monitor.windows`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rtml_common.config import KafkaSettings, MlflowSettings
from rtml_common.events import Event, FeatureVector, Prediction
from rtml_common.kafka.consumer import ConsumerLoop, LoopStats
from rtml_common.kafka.producer import EventProducer
from rtml_common.service_config import stop_on_signals
from rtml_drift_monitor.checkpoint import CheckpointFile
from rtml_drift_monitor.config import Settings
from rtml_drift_monitor.metrics import DriftMetrics
from rtml_drift_monitor.monitor import FEATURES_TOPIC, PREDICTIONS_TOPIC, DriftMonitor
from rtml_drift_monitor.watcher import ReferenceWatcher
from rtml_models.registry.base import ModelRegistry

logger = logging.getLogger(__name__)


@dataclass
class MonitorRun:
    """What a run did (for the entry point's last log line and tests)."""

    loop: LoopStats
    alerts: int
    retrain_requests: int
    windows_closed: int
    reference_version: str | None
    reloads: int
    events: dict[str, int] = field(default_factory=dict)


def run(settings: Settings | None = None, kafka: KafkaSettings | None = None,
        mlflow: MlflowSettings | None = None, max_idle_s: float | None = None,
        install_signal_handlers: bool = True, registry: ModelRegistry | None = None,
        stop: threading.Event | None = None,
        on_monitor: Callable[[DriftMonitor], None] | None = None) -> MonitorRun:
    """Watch until stopped (SIGTERM, ``stop`` set) or idle for ``max_idle_s`` once assigned."""
    settings = settings or Settings()
    kafka = kafka or KafkaSettings()
    tracking_uri = (mlflow or MlflowSettings()).tracking_uri
    if registry is None:
        from rtml_models.registry.mlflow import MlflowRegistry  # mlflow: heavy, import late

        registry = MlflowRegistry(tracking_uri)
    stop = stop or threading.Event()
    metrics = DriftMetrics()
    producer = EventProducer(kafka)
    checkpoints = CheckpointFile(settings.checkpoint_path)
    monitor = DriftMonitor(settings, producer, metrics, checkpoints=checkpoints, kafka=kafka)
    topics: dict[str, type[Event]] = {FEATURES_TOPIC: FeatureVector,
                                      PREDICTIONS_TOPIC: Prediction}
    loop = ConsumerLoop(topics, settings.consumer_group, monitor.handle, kafka, producer,
                        on_batch_consumed=monitor.consumed, on_idle=monitor.on_idle)
    monitor.assigned = lambda: set(loop.assigned)
    watcher = ReferenceWatcher(monitor, registry, tracking_uri, settings.model_name, kafka,
                               settings.consumer_group, settings.refresh_interval_s, metrics)

    def stop_all() -> None:
        stop.set()
        loop.stop()

    if install_signal_handlers:
        stop_on_signals(stop_all, logger)

    def stop_loop_when_asked() -> None:  # whoever sets ``stop`` (a test) stops the loop too
        stop.wait()
        loop.stop()

    threading.Thread(target=stop_loop_when_asked, daemon=True).start()
    if on_monitor is not None:
        on_monitor(monitor)
    stats: Any = LoopStats()
    if watcher.wait_until_loaded(stop):
        checkpoints.remove_leftovers()
        saved = checkpoints.load()
        if saved is not None and monitor.resume(saved):
            loop.set_start_offsets(monitor.start_offset)
        watcher.start()
        try:
            stats = loop.run(max_idle_s=max_idle_s)
        finally:
            watcher.stop()
        monitor.checkpoint()  # the loop closed cleanly: outputs flushed, offsets committed
    stop.set()
    producer.close()  # an open client would keep reconnecting to a broker that is gone
    return MonitorRun(stats, monitor.alerts_published, monitor.requests_published,
                      monitor.windows_closed, monitor.version, watcher.reloads,
                      dict(monitor.events))
