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
from rtml_consistency_monitor.check import unchecked_reason
from rtml_consistency_monitor.config import Settings
from rtml_consistency_monitor.metrics import record_feature_set_checked
from rtml_consistency_monitor.monitor import (
    DECISIONS_TOPIC,
    LABELS_TOPIC,
    TRANSACTIONS_TOPIC,
    ConsistencyMonitor,
)
from rtml_features.baseline import get_feature_set

logger = logging.getLogger(__name__)


@dataclass
class MonitorRun:
    """What a run did (for the entry point's last log line and tests)."""

    loop: LoopStats
    outcomes: dict[str, int] = field(default_factory=dict)
    mismatches: int = 0
    checked_values: int = 0
    #: Why the served feature set was not checked (None: it was).
    unchecked: str | None = None


def _idle_unchecked(name: str, reason: str, max_idle_s: float | None,
                    install_signal_handlers: bool, stop: threading.Event) -> MonitorRun:
    """Stay up without consuming anything (its metrics say the set is not checked) until
    stopped, or for ``max_idle_s``: the platform serving the set keeps a healthy monitor."""
    logger.warning("feature set %s is not checked: %s; the monitor stays up and checks nothing "
                   "(rtml_consistency_feature_set_checked{feature_set=%r} = 0)",
                   name, reason, name)
    if install_signal_handlers:
        stop_on_signals(stop.set, logger)
    stop.wait(max_idle_s)
    stop.set()
    return MonitorRun(LoopStats(), unchecked=reason)


def run(settings: Settings | None = None, kafka: KafkaSettings | None = None,
        max_idle_s: float | None = None, install_signal_handlers: bool = True,
        stop: threading.Event | None = None,
        on_monitor: Callable[[ConsistencyMonitor], None] | None = None) -> MonitorRun:
    """Monitor until stopped (SIGTERM, ``stop`` set) or idle for ``max_idle_s`` once assigned."""
    settings = settings or Settings()
    kafka = kafka or KafkaSettings()
    stop = stop or threading.Event()
    feature_set = get_feature_set(settings.feature_set)
    reason = unchecked_reason(feature_set)
    record_feature_set_checked(feature_set.name, reason is None)
    if reason is not None:
        return _idle_unchecked(feature_set.name, reason, max_idle_s, install_signal_handlers,
                               stop)
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
