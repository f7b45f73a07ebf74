"""Run the feature worker as a Faust (faust-streaming) app.

Same results and delivery guarantees as :mod:`.kafka_engine`; only the
transport differs. One agent consumes ``transactions`` and ``labels`` (one
Faust topic over both names, raw bytes) and hands batches from
``stream.noack_take`` to :meth:`FeatureWorker.handle` as decoded
:class:`~rtml_common.kafka.consumer.Record` objects. Batches matter: Faust's
per-message machinery (conductor, stream, sensors) is the known bottleneck,
so the feature maths, Redis writes and commits happen once per batch.

What is deliberately *not* Faust here, and why:

* **State.** No Faust tables, no changelog topics. Restoring a table reads its
  changelog "up to the end offset", which the local Kafka-protocol broker
  reports wrongly (a restored table can silently miss its newest updates), and
  changelogs rely on compaction that broker does not enforce. The window state
  lives in the :class:`FeatureWorker` and is checkpointed to Redis together
  with the input offsets it covers (:mod:`.checkpoint`).
* **Where a partition starts.** Faust positions every assigned partition at
  the group's committed offset (``Consumer.perform_seek``), after its
  recovery step and again whenever it resumes a stopped flow, so a seek made
  in an ``on_partitions_assigned`` handler is overwritten. The committed
  offset is the wrong place for us: events between the last checkpoint and
  the last commit would be missing from the restored state. So this engine
  wraps the consumer's ``perform_seek``: Faust's own seek runs, then every
  input partition is moved to :meth:`FeatureWorker.start_offset` (the
  checkpoint's offset, or the offsets already applied in this process).
* **Producing.** ``features``, ``transactions.late`` and dead letters go
  through the worker's confluent-kafka :class:`EventProducer`. aiokafka's
  idempotent producer fails against the local broker, and one producer keeps
  "flush before commit" a single call. Faust's own producer is not started.
* **Commits.** The take buffer is ``noack_take``: nothing is acked until the
  batch has been handled *and* the producer flushed. As in the shared
  consumer loop, flush + ack + commit happen at most every
  ``RTML_KAFKA_COMMIT_INTERVAL_S`` (flushing after every small batch would
  stall on the slowest delivery each time) and on stop. Plain ``take()`` is
  not used: it acks a batch as soon as the generator is resumed, i.e. before
  a deferred flush. Faust's background committer commits acked offsets only,
  so it can never get ahead of processing either. Commits are informational
  anyway (lag): restarts resume from the checkpoint, never from the committed
  offset, so a commit lost to a rebalance (Faust drops a revoked partition's
  acks before any user hook runs) costs nothing.
* **Web.** Faust's web server is disabled (it would bind 0.0.0.0:6066).

* **Fetch wait.** Faust hard-codes a 1.5 s broker-side fetch wait; it is cut
  to :data:`FETCH_MAX_WAIT_MS` (see :meth:`FaustEngine._shorten_fetch_wait`).

Cost: Faust still touches every message several times on its event loop
(fetcher task, conductor, stream iteration, ``wait_first`` futures), which
batching cannot remove. Measured here (2 cores shared with broker and
Redis, 100k transactions + 100k labels) the engine applied ~5,300 events/s
against ~15,000 for :mod:`.kafka_engine`; Faust delivering batches to a
no-op handler alone tops out near 7,400 events/s. Choose the kafka engine
where throughput matters; this one exists for teams standardised on Faust.

Invalid records go to ``<topic>.dlq`` with the reason, exactly as
:class:`~rtml_common.kafka.consumer.ConsumerLoop` sends them (same
``dead_letter_record``); a failing batch is retried with backoff, then split
so only the poison record is dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import faust
from confluent_kafka import Message
from faust.types import TP, EventT, StreamT
from opentelemetry import metrics

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_common.dependency import is_outage
from rtml_common.events import Event, Label, Transaction
from rtml_common.kafka.consumer import LoopStats, Record
from rtml_common.kafka.dead_letter import dead_letter_record
from rtml_common.kafka.headers import HeaderList, normalise_headers
from rtml_common.kafka.producer import EventProducer
from rtml_common.metric_buckets import DURATION_SECONDS
from rtml_common.serde import DecodeError, decode
from rtml_common.topics import spec_for_event
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.inputs import INPUT_DECODERS
from rtml_feature_pipeline.kafka_engine import EngineRun, build_worker, busy_seconds
from rtml_feature_pipeline.worker import FeatureWorker

logger = logging.getLogger(__name__)

#: Name of the single agent (and of its Faust stream).
AGENT_NAME = "rtml-feature-pipeline"
#: Longest a fetch may wait at the broker for data, as in the kafka engine.
FETCH_MAX_WAIT_MS = 10


class _SourceRecord:
    """A Faust message seen through the confluent-kafka ``Message`` methods.

    :func:`~rtml_common.kafka.dead_letter.dead_letter_record` builds the
    dead-letter record from a confluent ``Message``; this read-only view lets
    both engines share that one function, so their dead letters are
    byte-for-byte the same shape.
    """

    __slots__ = ("_headers", "_message")

    def __init__(self, message: Any, headers: HeaderList) -> None:
        self._message = message
        self._headers = headers

    def topic(self) -> str:
        return str(self._message.topic)

    def partition(self) -> int:
        return int(self._message.partition)

    def offset(self) -> int:
        return int(self._message.offset)

    def key(self) -> bytes | None:
        return cast(bytes | None, self._message.key)

    def value(self) -> bytes | None:
        return cast(bytes | None, self._message.value)

    def headers(self) -> HeaderList:
        return self._headers


class FaustEngine:
    """The Faust app around one :class:`FeatureWorker`; see the module docstring."""

    def __init__(self, settings: Settings, kafka: KafkaSettings, worker: FeatureWorker,
                 producer: EventProducer, datadir: str) -> None:
        self.settings = settings
        self.kafka = kafka
        self.worker = worker
        self.producer = producer
        self.stats = LoopStats()
        self.topics: dict[str, type[Event]] = {
            spec_for_event(Transaction).name: Transaction, spec_for_event(Label).name: Label,
        }
        self._transactions = spec_for_event(Transaction).name
        self._datadir = datadir
        # Created inside the running loop (run() builds the engine there).
        self._stop_requested = asyncio.Event()
        #: Set while no batch is being processed: stopping waits for it.
        self._batch_idle = asyncio.Event()
        self._batch_idle.set()
        self._error: BaseException | None = None
        self._streaming_since: float | None = None
        self._stream: StreamT[bytes] | None = None
        #: Handled events not yet acked (acked only after the producer is flushed).
        self._pending: list[EventT] = []
        self._last_commit = time.monotonic()
        self._last_activity = time.monotonic()
        meter = metrics.get_meter("rtml.kafka")
        # The same instruments as the shared consumer loop: dashboards do not
        # care which engine runs.
        self._consumed_counter = meter.create_counter(
            "rtml_events_consumed", description="Records read from Kafka")
        self._dead_letter_counter = meter.create_counter(
            "rtml_dead_letters", description="Records sent to a dead-letter topic")
        self._retry_counter = meter.create_counter(
            "rtml_handler_retries", description="Handler retries after an exception")
        self._batch_seconds = meter.create_histogram(
            "rtml_batch_duration", unit="s", description="Time to handle and commit one batch",
            explicit_bucket_boundaries_advisory=list(DURATION_SECONDS),
        )
        self.app = self._build_app()

    # -- the Faust app -------------------------------------------------------

    def _build_app(self) -> faust.App:
        kafka = self.kafka
        app = faust.App(
            self.settings.consumer_group,  # the app id is Faust's consumer group
            broker=[f"kafka://{server.strip()}"
                    for server in kafka.bootstrap_servers.split(",") if server.strip()],
            key_serializer="raw",
            value_serializer="raw",
            datadir=self._datadir,  # Faust insists on one; nothing of ours is stored there
            web_enabled=False,
            web_bind="127.0.0.1",  # belt and braces: never 0.0.0.0:6066
            broker_session_timeout=kafka.session_timeout_ms / 1000,
            broker_heartbeat_interval=min(3.0, kafka.session_timeout_ms / 3000),
            broker_client_id=f"{kafka.client_id}-{self.settings.consumer_group}",
            consumer_auto_offset_reset="earliest",
            consumer_max_fetch_size=self.settings.fetch_partition_bytes,
            topic_allow_declare=False,  # topics are created by `rtml` tooling, not by us
            topic_disable_leader=True,  # no leader-election topic
            stream_wait_empty=False,  # stopping: the in-flight batch is finished by us
            producer_threaded=False,
        )
        # Faust's own producer is never used (see the module docstring).
        app.boot_strategy.enable_kafka_producer = False
        topic = app.topic(*self.topics, key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")
        app.agent(topic, name=AGENT_NAME, concurrency=1)(self._agent)
        return app

    def _install_seek_hook(self) -> None:
        """Make every Faust "seek to committed" end at the worker's start offsets.

        Called once before the app starts. Also declares each assigned
        transaction partition as a watermark source, as the kafka engine does.
        """
        consumer = self.app.consumer
        faust_perform_seek: Callable[[], Awaitable[None]] = consumer.perform_seek

        async def perform_seek() -> None:
            await faust_perform_seek()
            self._shorten_fetch_wait()
            offsets: dict[TP, int] = {}
            for tp in consumer.assignment():
                if tp.topic not in self.topics:
                    continue
                if tp.topic == self._transactions:
                    self.worker.computer.expect_sources([f"{tp.topic}:{tp.partition}"])
                start = self.worker.start_offset(tp.topic, tp.partition)
                if start is not None:
                    offsets[tp] = start
            if offsets:
                await consumer.seek_wait(offsets)
                logger.info("partitions positioned at %s",
                            sorted((tp.topic, tp.partition, o) for tp, o in offsets.items()))
            if self._streaming_since is None:
                self._streaming_since = self._last_activity = time.monotonic()

        consumer.perform_seek = perform_seek  # type: ignore[method-assign]

    def _shorten_fetch_wait(self) -> None:
        """Cap how long a fetch may wait at the broker (Faust hard-codes 1.5 s).

        The Kafka-protocol broker used locally holds a fetch for its full wait
        time instead of answering as soon as data arrives, so Faust's fixed
        1.5 s made records wait ~0.4 s on average even at low rates. aiokafka
        reads the value for each fetch request; Faust offers no setting for
        it, hence the private attributes (faust-streaming 0.15 / aiokafka
        0.14 are pinned). Against Apache Kafka a short wait only means more
        (cheap) fetch requests while idle.
        """
        thread = getattr(self.app.consumer, "_thread", None)
        client = getattr(thread, "_consumer", None)
        fetcher = getattr(client, "_fetcher", None)
        if fetcher is None or not hasattr(fetcher, "_fetch_max_wait_ms"):
            logger.warning("cannot cap the aiokafka fetch wait: latency may reach 1.5 s")
            return
        fetcher._fetch_max_wait_ms = FETCH_MAX_WAIT_MS

    async def _agent(self, stream: StreamT[bytes]) -> None:
        self._stream = stream
        try:
            # noack_take is on the concrete Stream only (StreamT does not declare it).
            batches = cast(faust.Stream[bytes], stream).noack_take(
                self.kafka.batch_size, within=self.kafka.poll_timeout_s)
            async for events in batches:
                if self._stop_requested.is_set():
                    # Not handled, not acked: read again after the restart.
                    continue
                self._batch_idle.clear()
                try:
                    await self._process_batch(cast(Sequence[EventT], events))
                finally:
                    self._batch_idle.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. DeliveryError: stop; don't let Faust restart the agent
            logger.exception("feature agent failed")
            self._error = exc
            self.request_stop()

    # -- one batch -----------------------------------------------------------

    async def _process_batch(self, events: Sequence[EventT]) -> None:
        started = time.perf_counter()
        self._last_activity = time.monotonic()
        records: list[Record[Any]] = []
        sources: list[_SourceRecord] = []
        for event in events:
            message = event.message
            topic = message.topic
            self.stats.consumed += 1
            self._consumed_counter.add(1, {"topic": topic})
            headers = normalise_headers(message.headers)
            source = _SourceRecord(message, headers)
            event_type = self.topics.get(topic)
            try:
                if event_type is None:
                    raise DecodeError(f"no event type configured for topic {topic!r}")
                to_input = INPUT_DECODERS.get(event_type)
                value = (to_input(message.value, headers) if to_input is not None
                         else decode(message.value, event_type, headers))
                records.append(Record(
                    topic=topic, partition=message.partition, offset=message.offset,
                    key=message.key, value=value,
                    headers=headers, timestamp_ms=round(message.timestamp * 1000),
                ))
                sources.append(source)
            except DecodeError as exc:
                self._dead_letter(source, str(exc), "DecodeError", attempts=1)
        if records:
            await self._handle_with_retries(records, sources)
        self._pending.extend(events)
        if time.monotonic() - self._last_commit >= self.kafka.commit_interval_s:
            await self._flush_and_commit()
        self.stats.batches += 1
        self._batch_seconds.record(time.perf_counter() - started)

    async def _flush_and_commit(self) -> None:
        """Wait for every produced record, then ack and commit what was handled."""
        self.producer.flush()
        self._last_commit = time.monotonic()
        if not self._pending or self._stream is None:
            return
        pending, self._pending = self._pending, []
        for event in pending:
            await self._stream.ack(event)
        if await self.app.consumer.commit():
            self.stats.commits += 1

    async def _handle_with_retries(self, records: list[Record[Any]],
                                   sources: list[_SourceRecord]) -> None:
        error = await self._attempt(records)
        if error is None:
            self.stats.handled += len(records)
            return
        if len(records) == 1:
            self._dead_letter_failed(sources[0], error)
            return
        for record, source in zip(records, sources, strict=True):
            error = await self._attempt([record])
            if error is None:
                self.stats.handled += 1
            else:
                self._dead_letter_failed(source, error)

    async def _attempt(self, records: list[Record[Any]]) -> BaseException | None:
        """Run the handler with bounded retries (sleeping without blocking Faust).

        As in :class:`~rtml_common.kafka.consumer.ConsumerLoop`, a dependency's
        outage (Redis unavailable) is waited out without a bound and not counted.
        """
        delay = self.kafka.retry_backoff_s
        first_outage_delay = outage_delay = self.kafka.retry_backoff_s or 0.1
        failures = 0
        while True:
            try:
                self.worker.handle(records)
                return None
            except Exception as exc:  # any other handler failure is retried, then isolated
                if is_outage(exc):  # not the records' fault: wait, never dead-letter
                    if outage_delay == first_outage_delay:
                        logger.warning("Redis unavailable, waiting with %d record(s) (nothing "
                                       "dead-lettered): %r", len(records), exc)
                    self.stats.dependency_waits += 1
                    await asyncio.sleep(outage_delay)
                    outage_delay = min(outage_delay * 2, self.kafka.dependency_backoff_max_s)
                    continue
                failures += 1
                logger.warning("handler failed on %d record(s) (attempt %d/%d): %r",
                               len(records), failures, self.kafka.max_retries + 1, exc)
                if failures > self.kafka.max_retries:
                    return exc
                self.stats.retries += 1
                self._retry_counter.add(1)
                await asyncio.sleep(delay)
                delay *= 2

    def _dead_letter_failed(self, source: _SourceRecord, error: BaseException) -> None:
        attempts = self.kafka.max_retries + 1
        self._dead_letter(
            source, f"handler error after {attempts} attempts: {type(error).__name__}: {error}",
            type(error).__name__, attempts=attempts)

    def _dead_letter(self, source: _SourceRecord, reason: str, error_type: str,
                     attempts: int) -> None:
        topic, key, value, headers = dead_letter_record(
            cast(Message, source), self.settings.consumer_group, reason, error_type, attempts)
        self.producer.send_raw(topic, key, value, headers)
        # The record's fate is final once the dead letter is flushed, which every
        # checkpoint does before saving: count it as covered, or a restart from a
        # checkpoint that ends just before it would dead-letter it a second time.
        self.worker.cover({(source.topic(), source.partition()): source.offset() + 1})
        self.stats.dead_lettered += 1
        self._dead_letter_counter.add(1, {"topic": source.topic(), "error_type": error_type})
        logger.warning("dead-lettered %s[%s]@%s: %s",
                       source.topic(), source.partition(), source.offset(), reason)

    # -- lifecycle -----------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the in-flight batch, commit it and stop (safe from signal handlers)."""
        self._stop_requested.set()

    async def run(self, max_idle_s: float | None = None,
                  install_signal_handlers: bool = True) -> LoopStats:
        """Start the app, run until stopped / idle / failed, stop it; re-raise a failure."""
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.request_stop)
        self._install_seek_hook()
        try:
            await self.app.start()
            while not self._stop_requested.is_set():
                if self.app.crashed:
                    self._error = self._error or self.app.crash_reason or RuntimeError(
                        "the Faust app crashed")
                    break
                if (max_idle_s is not None and self._streaming_since is not None
                        and self._batch_idle.is_set()
                        and time.monotonic() - self._last_activity > max_idle_s):
                    logger.info("idle for %.1f s: stopping", max_idle_s)
                    break
                if self._batch_idle.is_set():  # a burst then silence: checkpoint it anyway
                    self.worker.checkpoint_if_due()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_requested.wait(), timeout=0.1)
            # Let a batch in flight finish, then flush and commit what was handled.
            self._stop_requested.set()
            await self._batch_idle.wait()
            if self._error is None and not self.app.crashed:
                await self._flush_and_commit()
        finally:
            self._stop_requested.set()
            if install_signal_handlers:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(signum)
            await self.app.stop()
        if self._error is not None:
            raise self._error
        return self.stats


def run(settings: Settings | None = None, kafka: KafkaSettings | None = None,
        redis_settings: RedisSettings | None = None, max_idle_s: float | None = None,
        install_signal_handlers: bool = True,
        on_worker: Callable[[FeatureWorker], None] | None = None) -> EngineRun:
    """Consume until stopped (SIGTERM) or idle for ``max_idle_s``; checkpoint on the way out.

    Same contract as :func:`.kafka_engine.run`, so the two are interchangeable.
    """
    settings = settings or Settings()
    kafka = kafka or KafkaSettings()
    redis_settings = redis_settings or RedisSettings()
    # Closed on the way out: a producer left open keeps reconnecting to a broker that is gone.
    with EventProducer(kafka) as producer:
        worker = build_worker(settings, kafka, redis_settings, producer)
        if on_worker is not None:
            on_worker(worker)  # e.g. a benchmark attaching a freshness probe
        checkpoint = worker.recover()
        with tempfile.TemporaryDirectory(prefix="rtml-faust-") as datadir:

            async def main() -> LoopStats:
                engine = FaustEngine(settings, kafka, worker, producer, datadir)
                return await engine.run(max_idle_s, install_signal_handlers)

            with worker.collection_paused():
                stats = asyncio.run(main())
        worker.checkpoint()
        return EngineRun(stats, worker.events_applied, worker.vectors_published, worker.late_events,
                         worker.computer.revisions, checkpoint is not None, busy_seconds(worker))
