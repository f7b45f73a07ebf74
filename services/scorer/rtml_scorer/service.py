"""Wiring: registry → serving snapshot → model watcher → the scoring consumer loop.

:func:`run` is what ``python -m rtml_scorer`` calls, and what tests and the
benchmark call in-process. Start-up order matters:

1. load the champion and shadows (waiting, with a log line, until a
   champion alias exists: scoring without one would only dead-letter);
2. start the model-events watcher, so alias moves from now on are seen;
3. join the scoring group on ``features`` + ``labels`` and score until
   stopped; each ``features`` partition, as it is assigned, first has what
   was published for it since its last commit read back (:mod:`.republish`),
   so a replay publishes nothing twice. Stopping (SIGTERM/SIGINT or ``stop``) finishes the in-flight
   batch, flushes, commits, leaves the group (the partitions move to the
   other members with nothing lost or scored twice), then checkpoints the
   online models.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtml_common.config import KafkaSettings, MlflowSettings
from rtml_common.events import Event, FeatureVector, Label
from rtml_common.kafka.consumer import ConsumerLoop, LoopStats
from rtml_common.kafka.producer import EventProducer
from rtml_common.service_config import stop_on_signals
from rtml_models.registry.base import ModelRegistry
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.serving import ServingModels
from rtml_scorer.checkpoint import Checkpointer
from rtml_scorer.config import Settings
from rtml_scorer.decoding import decode_vector
from rtml_scorer.outputs import PREDICTIONS_TOPIC, SHADOW_TOPIC
from rtml_scorer.republish import PublicationLedger
from rtml_scorer.scorer import FEATURES_TOPIC, LABELS_TOPIC, Scorer
from rtml_scorer.watcher import ModelWatcher

logger = logging.getLogger(__name__)


@dataclass
class ScorerRun:
    """What a run did (for the entry point's last log line, tests and benchmarks)."""

    loop: LoopStats
    predictions: int
    shadow_scores: int
    dead_lettered: int
    labels_learned: int
    checkpoints: list[str]
    reloads: int
    detached: list[tuple[str, str]]
    busy_seconds: float


def wait_for_champion(serving: ServingModels, stop: threading.Event,
                      retry_s: float = 2.0) -> bool:
    """Refresh until a champion is served (or ``stop``); False if stopped first."""
    while not stop.is_set():
        try:
            if serving.refresh().champion is not None:
                logger.info("serving %s: %s", serving.name, serving.current.describe())
                return True
            logger.warning("%s has no champion alias yet; retrying in %g s", serving.name,
                           retry_s)
        except Exception as exc:  # registry unreachable at start: keep trying, visibly
            logger.warning("cannot load %s from the registry: %r", serving.name, exc)
        stop.wait(retry_s)
    return False


def instance_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def run(settings: Settings | None = None, kafka: KafkaSettings | None = None,
        mlflow: MlflowSettings | None = None, max_idle_s: float | None = None,
        install_signal_handlers: bool = True, registry: ModelRegistry | None = None,
        workdir: Path | None = None, stop: threading.Event | None = None,
        on_scorer: Callable[[Scorer], None] | None = None) -> ScorerRun:
    """Score until stopped (SIGTERM, ``stop`` set) or idle for ``max_idle_s`` once assigned."""
    settings = settings or Settings()
    kafka = kafka or KafkaSettings()
    registry = registry or MlflowRegistry((mlflow or MlflowSettings()).tracking_uri)
    stop = stop or threading.Event()
    serving = ServingModels(registry, settings.model_name, workdir=workdir)
    producer = EventProducer(kafka)
    checkpointer = Checkpointer(registry, settings.model_name, settings.checkpoint_interval_s,
                                instance_name())
    scorer = Scorer(settings, serving, producer, settings.consumer_group, checkpointer, stop)
    topics: dict[str, type[Event]] = {FEATURES_TOPIC: FeatureVector, LABELS_TOPIC: Label}
    # "range" gives each member the same partition numbers of every topic, and
    # features and labels are both keyed by customer with equal partition counts:
    # a process owns the labels of exactly the transactions it scored, which the
    # River challenger needs to learn from them (cooperative-sticky doesn't promise it).
    overrides: dict[str, Any] = {"fetch.wait.max.ms": 10, "partition.assignment.strategy": "range"}
    # The lean decoder: the same acceptance as FeatureVector, a fraction of the cost.
    loop: ConsumerLoop
    ledger = PublicationLedger(kafka, settings.consumer_group, FEATURES_TOPIC,
                               [PREDICTIONS_TOPIC, SHADOW_TOPIC],
                               settings.publication_checkpoint_interval_s,
                               lambda: loop.stats.commits)
    scorer.ledger = ledger

    def owned() -> set[int]:
        return {p for topic, p in loop.assigned if topic == FEATURES_TOPIC}

    def start_offset(topic: str, partition: int) -> int | None:
        # Called as the partition is assigned, before any of its records is fetched.
        if topic == FEATURES_TOPIC:
            ledger.prepare([partition])
        return None  # resume at the group's committed offset

    def on_idle() -> None:
        scorer.on_idle()
        ledger.tick(owned())

    loop = ConsumerLoop(topics, settings.consumer_group, scorer.handle, kafka, producer,
                        start_offsets=start_offset,
                        on_batch_consumed=lambda consumed: ledger.after_batch(consumed, owned()),
                        on_idle=on_idle,
                        decoders={FEATURES_TOPIC: decode_vector}, **overrides)
    scorer.assigned = lambda: set(loop.assigned)
    watcher = ModelWatcher(serving, scorer.guard, scorer.metrics, kafka,
                           settings.consumer_group, settings.refresh_interval_s)

    def stop_all() -> None:
        stop.set()
        loop.stop()

    if install_signal_handlers:
        stop_on_signals(stop_all, logger)
    # Whoever sets ``stop`` (a test, the benchmark) stops the loop too.
    def stop_loop_when_asked() -> None:
        stop.wait()
        loop.stop()

    threading.Thread(target=stop_loop_when_asked, daemon=True).start()
    if on_scorer is not None:
        on_scorer(scorer)
    stats = LoopStats()
    if wait_for_champion(serving, stop):
        watcher.start()
        try:
            stats = loop.run(max_idle_s=max_idle_s)
        finally:
            watcher.stop()
            scorer.close()
    stop.set()
    producer.close()  # an open client would keep reconnecting to a broker that is gone
    busy = (scorer.busy_until - scorer.busy_since
            if scorer.busy_since is not None and scorer.busy_until is not None else 0.0)
    return ScorerRun(stats, scorer.predictions, scorer.shadow_scores, scorer.dead_lettered,
                     scorer.labels_learned, list(checkpointer.registered), watcher.reloads,
                     scorer.guard.detached(), busy)
