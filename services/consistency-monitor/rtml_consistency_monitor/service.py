"""Wiring: the transactions/labels/decisions consumer loop around a :class:`ConsistencyMonitor`.

:func:`run` is what ``python -m rtml_consistency_monitor`` calls, and what
tests call in-process. The loop joins its own consumer group (default
``rtml-consistency-monitor``), so it reads every record of the three topics
independently of the other services; its idle hook re-checks readiness, so a
watermark that moves because partitions went idle still releases the
pending decisions. SIGTERM/SIGINT (or ``stop``) finishes the in-flight
batch, commits and leaves the group.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from rtml_common.config import KafkaSettings
from rtml_common.events import Decision, Event, Label, Transaction
from rtml_common.kafka.consumer import ConsumerLoop, LoopStats
from rtml_common.kafka.producer import EventProducer
from rtml_common.service_config import stop_on_signals
from rtml_consistency_monitor.config import Settings
from rtml_consistency_monitor.monitor import (
    DECISIONS_TOPIC,
    LABELS_TOPIC,
    TRANSACTIONS_TOPIC,
    ConsistencyMonitor,
)

logger = logging.getLogger(__name__)


@dataclass
class MonitorRun:
    """What a run did (for the entry point's last log line and tests)."""

    loop: LoopStats
    outcomes: dict[str, int] = field(default_factory=dict)
    mismatches: int = 0
    checked_values: int = 0


def run(settings: Settings | None = None, kafka: KafkaSettings | None = None,
        max_idle_s: float | None = None, install_signal_handlers: bool = True,
        stop: threading.Event | None = None,
        on_monitor: Callable[[ConsistencyMonitor], None] | None = None) -> MonitorRun:
    """Monitor until stopped (SIGTERM, ``stop`` set) or idle for ``max_idle_s`` once assigned."""
    settings = settings or Settings()
    kafka = kafka or KafkaSettings()
    stop = stop or threading.Event()
    monitor = ConsistencyMonitor(settings)
    producer = EventProducer(kafka)  # dead letters only: the monitor publishes nothing
    topics: dict[str, type[Event]] = {TRANSACTIONS_TOPIC: Transaction, LABELS_TOPIC: Label,
                                      DECISIONS_TOPIC: Decision}
    def check_when_idle() -> None:  # the loop's idle hook returns nothing
        monitor.check_ready()

    loop = ConsumerLoop(topics, settings.consumer_group, monitor.handle, kafka, producer,
                        on_idle=check_when_idle)
    monitor.set_assigned(lambda: set(loop.assigned))

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
    try:
        stats = loop.run(max_idle_s=max_idle_s)
    finally:
        stop.set()
        producer.close(flush=False)  # the loop flushed it; an open one outlives the broker
    return MonitorRun(stats, dict(monitor.outcomes), sum(monitor.total.mismatches.values()),
                      sum(monitor.total.checked.values()))
