"""Wiring: SQLite state → consumer loop (thread) → evaluator (thread) → HTTP API (uvicorn).

:func:`run` is what ``python -m rtml_shadow_auditor`` calls, and what the
tests call in-process. Start-up and shutdown:

1. open the state; the consumer resumes every partition at the offset stored
   **with** the state (``set_start_offsets``), so the group's committed
   offsets never decide what is counted;
2. the consumer thread joins the group on ``predictions``, ``shadow-scores``
   and ``labels`` and applies each batch atomically;
3. the evaluator thread evaluates every ``evaluate_interval_s``;
4. the API serves until SIGTERM/SIGINT (or ``stop``, or the consumer going
   idle for ``exit_when_idle_s``); then the consumer finishes its batch and
   leaves the group, and one last evaluation writes the final report.

One instance per model: the state is a local file, so two members of the
group would each see only their partitions. (A standby with the same state
volume is fine; two active ones are not.)
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from rtml_common.config import KafkaSettings
from rtml_common.kafka.consumer import ConsumerLoop, LoopStats
from rtml_common.service_config import stop_on_signals
from rtml_shadow_auditor.api import create_app
from rtml_shadow_auditor.config import Settings
from rtml_shadow_auditor.evaluator import Evaluator
from rtml_shadow_auditor.join import TOPICS, Joiner
from rtml_shadow_auditor.metrics import AuditorMetrics
from rtml_shadow_auditor.promotion import RegistryClient
from rtml_shadow_auditor.store import Store

logger = logging.getLogger(__name__)

#: Counter of records the consumer loop dead-lettered (malformed, or the handler failed).
DEAD_LETTERED = "dead_lettered_records"


@dataclass
class AuditorRun:
    """What a run did (for the entry point's last log line and tests)."""

    loop: LoopStats = field(default_factory=LoopStats)
    applied: int = 0
    evaluations: int = 0
    errors: list[str] = field(default_factory=list)


class ShadowAuditor:
    """The pieces of one auditor process, built from settings."""

    def __init__(self, settings: Settings, kafka: KafkaSettings,
                 registry: RegistryClient | None = None) -> None:
        self.settings = settings
        self.kafka = kafka
        self.store = Store(settings.state_db)
        self.joiner = Joiner(self.store, settings.model_name)
        self.registry = registry or RegistryClient(settings.registry_url,
                                                   settings.registry_api_key,
                                                   settings.registry_timeout_s)
        self.evaluator = Evaluator(settings, self.store, self.registry, AuditorMetrics())
        self.loop = ConsumerLoop(TOPICS, settings.consumer_group, self.joiner.handle, kafka,
                                 start_offsets=self.joiner.start_offset,
                                 on_batch_consumed=self._consumed)
        self._dead_seen = 0
        self.consuming = False

    def _consumed(self, consumed: dict[tuple[str, int], int]) -> None:
        dead = self.loop.stats.dead_lettered - self._dead_seen
        self._dead_seen += dead
        self.store.advance_offsets(consumed, {DEAD_LETTERED: dead})

    def status(self) -> dict[str, Any]:
        return {"consuming": self.consuming,
                "assigned": sorted(f"{t}[{p}]" for t, p in self.loop.assigned),
                "records_applied": self.joiner.applied}

    def consume(self, max_idle_s: float | None) -> LoopStats:
        self.consuming = True
        try:
            return self.loop.run(max_idle_s=max_idle_s)
        finally:
            self.consuming = False
            self.store.close()

    def evaluate_periodically(self, stop: threading.Event, errors: list[str]) -> None:
        while not stop.wait(self.settings.evaluate_interval_s):
            self.evaluate_safely(errors)
        self.store.close()

    def evaluate_safely(self, errors: list[str]) -> None:
        try:
            self.evaluator.evaluate()
        except Exception as exc:  # the next evaluation may succeed; keep consuming
            logger.exception("evaluation failed")
            errors.append(repr(exc))


def run(settings: Settings | None = None, kafka: KafkaSettings | None = None, *,
        serve_http: bool = True, stop: threading.Event | None = None,
        install_signal_handlers: bool = True,
        registry: RegistryClient | None = None,
        on_start: Any = None) -> AuditorRun:
    """Audit until stopped (SIGTERM, ``stop``, or idle for ``exit_when_idle_s``)."""
    settings = settings or Settings()
    kafka = kafka or KafkaSettings()
    stop = stop or threading.Event()
    auditor = ShadowAuditor(settings, kafka, registry)
    if on_start is not None:
        on_start(auditor)
    result = AuditorRun()

    if install_signal_handlers:
        stop_on_signals(stop.set, logger, "stopping")

    def consume() -> None:
        try:
            result.loop = auditor.consume(settings.exit_when_idle_s or None)
        except Exception as exc:
            logger.exception("the consumer loop failed")
            result.errors.append(repr(exc))
        finally:
            stop.set()

    def stop_loop_when_asked() -> None:
        stop.wait()
        auditor.loop.stop()

    consumer = threading.Thread(target=consume, name="auditor-consumer", daemon=True)
    evaluator = threading.Thread(target=auditor.evaluate_periodically, args=(stop, result.errors),
                                 name="auditor-evaluator", daemon=True)
    threading.Thread(target=stop_loop_when_asked, daemon=True).start()
    consumer.start()
    evaluator.start()
    if serve_http:
        server = uvicorn.Server(uvicorn.Config(
            create_app(auditor.evaluator, auditor.store, auditor.status),
            host=settings.http_host, port=settings.http_port, log_config=None))

        def stop_server_when_asked() -> None:
            stop.wait()
            server.should_exit = True

        threading.Thread(target=stop_server_when_asked, daemon=True).start()
        server.run()  # returns on SIGTERM/SIGINT (uvicorn's own handling) or should_exit
        stop.set()
    else:
        while not stop.wait(0.5):
            pass
    consumer.join()
    evaluator.join()
    auditor.evaluate_safely(result.errors)  # the final figures and report, after the last batch
    auditor.store.close()
    auditor.loop.producer.close()
    result.applied = auditor.joiner.applied
    result.evaluations = auditor.evaluator.evaluations
    return result
