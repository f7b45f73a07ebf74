"""Run the feature worker on the confluent-kafka consumer loop.

The lean engine: librdkafka batches, msgspec decoding straight to the worker's inputs
(:mod:`.inputs`), no framework per-message overhead. It reads ``transactions`` and ``labels`` as one
consumer group member that owns every partition (terminal windows need all
of a terminal's transactions, which are keyed by customer), resuming each
partition from the worker's checkpoint.

A feature set the classic computer cannot compute (:mod:`.generic_path`) has its
``transactions`` records decoded with its own schema (:mod:`.generic_inputs`);
its ``prefix`` online layout is the generic layout
(:class:`~rtml_features.online_store.redis.generic_writer.GenericOnlineWriter`, checkpointed
with the worker, see :mod:`.generic_store`), ``latest`` the same hashes as the classic path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_common.dependency import StoppedWaiting
from rtml_common.events import Event, FeatureVector, Label, Transaction
from rtml_common.kafka.consumer import ConsumerLoop, LoopStats
from rtml_common.kafka.producer import EventProducer
from rtml_common.topics import late_topic, spec_for_event
from rtml_feature_pipeline.alignment import EventTimeAlignment
from rtml_feature_pipeline.checkpoint import CheckpointStore, checkpoint_key
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.event_time_guard import EventTimeBounds
from rtml_feature_pipeline.generic_inputs import generic_decoder
from rtml_feature_pipeline.generic_path import UnservableFeatureSet, uses_classic_path
from rtml_feature_pipeline.generic_store import GenericStore
from rtml_feature_pipeline.inputs import INPUT_DECODERS
from rtml_feature_pipeline.republish import PublishedOutputs
from rtml_feature_pipeline.worker import FeatureWorker
from rtml_features.baseline import get_feature_set
from rtml_features.online_store.redis.connection import connect
from rtml_features.online_store.redis.generic_writer import GenericOnlineWriter
from rtml_features.online_store.redis.prefix_writer import PrefixLogWriter
from rtml_features.online_store.redis.store import RedisOnlineStore
from rtml_features.stream import StreamingFeatureComputer

logger = logging.getLogger(__name__)


@dataclass
class EngineRun:
    """What a run did (for the CLI, tests and benchmarks)."""

    loop: LoopStats
    events_applied: int
    vectors_published: int
    late_events: int
    revisions: int
    resumed_from_checkpoint: bool
    #: Seconds from the first batch's start to the last batch's end (excludes group join
    #: and idle waiting): the denominator of throughput figures.
    busy_seconds: float = 0.0


def build_worker(settings: Settings, kafka: KafkaSettings, redis_settings: RedisSettings,
                 producer: EventProducer) -> FeatureWorker:
    """The worker with its Redis online store and checkpoint store."""
    feature_set = get_feature_set(settings.feature_set)
    classic = uses_classic_path(feature_set)
    prefix = "prefix" in settings.online_layout
    if not classic and settings.engine != "kafka":
        raise UnservableFeatureSet(
            f"feature set {feature_set.name!r} needs the generic streaming computer, which "
            f"the {settings.engine} engine does not run: set "
            "RTML_FEATURE_PIPELINE_ENGINE=kafka")
    store = RedisOnlineStore(redis_settings.url, settings.redis_ttl_s,
                             redis_settings.socket_timeout_s)
    checkpoints = CheckpointStore(
        connect(redis_settings.url, socket_timeout=30),  # a server or a cluster, by the URL
        checkpoint_key(settings.consumer_group, feature_set.name, feature_set.version),
    )
    transactions = spec_for_event(Transaction).name
    # What a crashed run published after the checkpoint is read back and not sent again.
    published = PublishedOutputs(kafka, feature_set, spec_for_event(FeatureVector).name,
                                 late_topic(transactions),
                                 [transactions, spec_for_event(Label).name])
    return FeatureWorker(feature_set, store, producer,
                         timedelta(seconds=settings.allowed_lateness_s), checkpoints,
                         settings.checkpoint_interval_s, settings.gc_freeze_interval_s,
                         published,
                         event_time_bounds=event_time_bounds(settings),
                         consumer_group=settings.consumer_group,
                         prefix_logs=(PrefixLogWriter(store.client, feature_set,
                                                      settings.redis_ttl_s)
                                      if prefix and classic else None),
                         write_latest="latest" in settings.online_layout,
                         generic_writer=(GenericStore(GenericOnlineWriter(
                             feature_set, settings.redis_ttl_s,
                             lateness_ms=round(settings.allowed_lateness_s * 1000)))
                             if prefix and not classic else None))


def input_decoders(worker: FeatureWorker, topics: dict[str, type[Event]]
                   ) -> dict[str, Callable[..., Any]]:
    """Per topic, the decoder of its records into the worker's inputs: the handbook's,
    or for a non-classic set its own schema's on ``transactions`` (labels stay the
    handbook's)."""
    decoders: dict[str, Callable[..., Any]] = {
        name: INPUT_DECODERS[event_type] for name, event_type in topics.items()}
    if not worker.classic:
        decoders[spec_for_event(Transaction).name] = generic_decoder(worker.feature_set.schema)
    return decoders


def event_time_bounds(settings: Settings) -> EventTimeBounds:
    """The guard's bounds from the ``RTML_FEATURE_PIPELINE_MAX_*`` settings."""
    return EventTimeBounds(
        max_ahead_ms=round(settings.max_event_ahead_s * 1000),
        max_clock_skew_ms=round(settings.max_clock_skew_s * 1000),
        max_partition_skew_ms=round(settings.max_partition_skew_s * 1000),
        max_event_age_ms=round(settings.max_event_age_s * 1000))


def run(settings: Settings | None = None, kafka: KafkaSettings | None = None,
        redis_settings: RedisSettings | None = None, max_idle_s: float | None = None,
        install_signal_handlers: bool = True,
        on_worker: Callable[[FeatureWorker], None] | None = None) -> EngineRun:
    """Consume until stopped (SIGTERM) or idle for ``max_idle_s``; checkpoint on the way out."""
    settings = settings or Settings()
    kafka = kafka or KafkaSettings()
    redis_settings = redis_settings or RedisSettings()
    # Closed on the way out: a producer left open keeps reconnecting to a broker that is gone.
    with EventProducer(kafka) as producer:
        worker = build_worker(settings, kafka, redis_settings, producer)
        if on_worker is not None:
            on_worker(worker)  # e.g. a benchmark attaching a freshness probe
        checkpoint = worker.recover()
        topics: dict[str, type[Event]] = {
            spec_for_event(Transaction).name: Transaction, spec_for_event(Label).name: Label,
        }
        client_overrides: dict[str, Any] = {
            "max.partition.fetch.bytes": settings.fetch_partition_bytes, "fetch.wait.max.ms": 10}
        # Decoded straight to what the worker reads (same acceptance and refusals as the
        # event types, see .inputs): no pydantic event built per record.
        alignment: EventTimeAlignment | None = None

        def after_batch(consumed: dict[tuple[str, int], int]) -> None:
            worker.cover(consumed)
            if alignment is not None:
                alignment.after_batch()

        def on_idle() -> None:
            if alignment is not None:
                alignment.on_idle()
            worker.checkpoint_if_due()  # a burst then silence: the checkpoint still catches up

        loop = ConsumerLoop(topics, settings.consumer_group, worker.handle, kafka, producer,
                            start_offsets=worker.start_offset, on_batch_consumed=after_batch,
                            on_idle=on_idle,
                            decoders=input_decoders(worker, topics),
                            **client_overrides)
        worker.watch_assignments(loop)
        # The alignment reads the computer's source_times, which both computers keep.
        alignment = EventTimeAlignment(loop, cast(StreamingFeatureComputer, worker.computer),
                                       int(settings.max_partition_lead_s * 1000))
        if install_signal_handlers:
            loop.install_signal_handlers()
        with worker.collection_paused():
            stats = loop.run(max_idle_s=max_idle_s)
        try:  # waits for Redis like the loop did, unless the loop was stopped
            loop.dependency.call(worker.checkpoint, "the final checkpoint")
        except StoppedWaiting:
            logger.warning("stopped while Redis is unavailable: no final checkpoint; the next "
                           "run resumes from the last one and replays what followed it")
        return EngineRun(stats, worker.events_applied, worker.vectors_published, worker.late_events,
                         worker.computer.revisions, checkpoint is not None, busy_seconds(worker))


def busy_seconds(worker: FeatureWorker) -> float:
    """Wall-clock seconds the worker spent between its first and last batch."""
    if worker.busy_since is None or worker.busy_until is None:
        return 0.0
    return worker.busy_until - worker.busy_since
