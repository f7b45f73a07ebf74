"""At-least-once consumer loop: bounded retries and a dead-letter path for bad records,
an unbounded wait for unavailable dependencies.

The contract every rtml consumer relies on:

1. Offsets are committed only after a batch has been handled *and* every
   record the handler produced has been acknowledged by the broker (the shared
   :class:`~rtml_common.kafka.producer.EventProducer` is flushed first).
   Flush + commit happen at most every ``commit_interval_s`` (and always on
   stop and before partitions are revoked): flushing after every small batch
   would stall on the slowest delivery each time. A crash
   at any point therefore replays, never skips: handlers must be idempotent
   (dedupe by event id, idempotent writes) — the broker's transactions are not
   relied upon because the local broker does not implement them correctly.
2. A record whose bytes are not a valid event goes straight to ``<topic>.dlq``
   with the precise validation reason; retrying cannot fix it. Dead-lettering
   never fails the loop: the record is cut to fit the producer's
   ``message.max.bytes`` (original size and SHA-256 in headers), and one the
   broker still refuses is retried, then sent minimal, then logged as
   undeliverable with its coordinates and digest, inside the flush that
   precedes the commit (:mod:`rtml_common.kafka.producer`) — so a record
   near the size limit cannot crash-loop the consumer. By default a
   topic's records are validated as its pydantic event type
   (:func:`rtml_common.serde.decode`); a hot consumer may give a topic its own
   :data:`Decoder` (``decoders=``) — a leaner parse into its own value type —
   which must raise :class:`~rtml_common.serde.DecodeError` with the reason
   for anything the event type would refuse.
3. A batch whose handler raises is retried ``max_retries`` times with
   exponential backoff. If it still fails, the batch is split and each record
   retried alone, so one poison record is dead-lettered with the exception as
   reason and its neighbours still land.
4. Unless the error is a dependency's outage (:func:`rtml_common.dependency.is_outage`:
   connection refused / reset, timeouts, redis-py's connection and timeout
   errors, or :class:`~rtml_common.dependency.DependencyUnavailable` raised by
   the handler for its own clients): that is not the record's fault, so the
   batch is retried *without a bound* — capped exponential backoff from
   ``retry_backoff_s`` up to ``dependency_backoff_max_s`` — and never isolated
   or dead-lettered; its offsets wait with it (one warning when the outage
   starts, one line with the attempt count when it ends, the gauge
   ``rtml_dependency_waiting``; see :class:`~rtml_common.dependency.DependencyWait`).
   Outage failures do not count against ``max_retries``. The idle hook waits
   the same way. A stop during the wait returns from :meth:`ConsumerLoop.run`
   with that batch uncommitted: the next run replays it (at-least-once).
   While waiting, the loop does not poll: an outage longer than librdkafka's
   ``max.poll.interval.ms`` (5 min by default) makes the member leave its group
   and rejoin afterwards, the held batch's commit then fails and it is
   replayed — handlers are idempotent anyway.
5. SIGTERM / SIGINT (or :meth:`ConsumerLoop.stop`) lets the in-flight batch
   finish, commits it, flushes the producer and leaves the group cleanly.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Generic, TypeVar

import msgspec
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from opentelemetry import metrics

from rtml_common.config import KafkaSettings
from rtml_common.dependency import DependencyWait, StoppedWaiting, is_outage
from rtml_common.events import Event
from rtml_common.kafka.dead_letter import (
    BATCH_OVERHEAD_BYTES,
    RECORD_OVERHEAD_BYTES,
    dead_letter_record,
)
from rtml_common.kafka.headers import normalise_headers
from rtml_common.kafka.producer import EventProducer
from rtml_common.kafka.progress import ConsumerProgress
from rtml_common.metric_buckets import DURATION_SECONDS
from rtml_common.serde import DecodeError, decode

logger = logging.getLogger(__name__)

#: A record's decoded value: an :class:`Event` unless the topic has its own decoder.
V = TypeVar("V")


class Record(msgspec.Struct, Generic[V], gc=False):
    """A decoded event (or a topic decoder's value) with the coordinates it was read from.

    Treat as read-only. One is built per consumed record, so a msgspec ``Struct``
    rather than a dataclass: its ``__init__`` is C (~0.1 µs; a slotted dataclass's
    ~0.3, a frozen one's 4x that), and ``gc=False`` keeps it out of the cyclic
    garbage collector's walks (it holds no cycles: coordinates, a value, headers).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: V
    headers: Sequence[tuple[str, bytes | None]]
    timestamp_ms: int


BatchHandler = Callable[[list[Record[Any]]], None]
#: A topic's own value decoder: (value, headers) -> the record's ``value``;
#: raises :class:`~rtml_common.serde.DecodeError` with the dead-letter reason.
Decoder = Callable[[bytes | None, Sequence[tuple[str, bytes | None]]], Any]
#: Where to start a newly assigned (topic, partition); None = the group's committed offset.
StartOffsets = Callable[[str, int], int | None]


#: librdkafka's defaults for the fetch limits :func:`fetch_limits` only ever raises.
_DEFAULT_PARTITION_FETCH_BYTES = 1_048_576
_DEFAULT_FETCH_MAX_BYTES = 52_428_800
_DEFAULT_RECEIVE_MAX_BYTES = 100_000_000


def fetch_limits(max_message_bytes: int) -> dict[str, int]:
    """Consumer fetch sizes that carry a whole record of ``max_message_bytes`` in one fetch.

    Kafka (and librdkafka) return a first batch larger than the fetch limits
    anyway, so this is about one round trip, not correctness, except for
    ``receive.message.max.bytes``, a hard cap on a response. Defaults are kept
    whenever they already suffice (they do for the default 1,000,000-byte limit).
    """
    batch = max_message_bytes + RECORD_OVERHEAD_BYTES + BATCH_OVERHEAD_BYTES
    partition = max(_DEFAULT_PARTITION_FETCH_BYTES, batch)
    total = max(_DEFAULT_FETCH_MAX_BYTES, partition)
    return {
        "max.partition.fetch.bytes": partition,
        "fetch.max.bytes": total,
        "receive.message.max.bytes": max(_DEFAULT_RECEIVE_MAX_BYTES, total + 512),
    }


def consumer_config(settings: KafkaSettings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """librdkafka properties for a manually committing group member."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": f"{settings.client_id}-{group_id}",
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "partition.assignment.strategy": "cooperative-sticky",
        **fetch_limits(settings.max_message_bytes),
    }
    config.update(settings.extra)
    config.update(overrides)
    return config


@dataclass
class LoopStats:
    """Counters of one loop's life, for tests, logs and progress output."""

    consumed: int = 0
    handled: int = 0
    dead_lettered: int = 0
    retries: int = 0
    #: Handler attempts that failed on an unavailable dependency (waited out, not counted
    #: in ``retries``).
    dependency_waits: int = 0
    batches: int = 0
    commits: int = 0


def _event_decoder(event_type: type[Event]) -> Decoder:
    def decode_event(value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> Any:
        return decode(value, event_type, headers)

    return decode_event


class ConsumerLoop:
    """Consume ``topics`` (name -> event type) as ``group_id`` and hand batches to a handler.

    The handler receives decoded :class:`Record` objects in partition order and
    may produce through ``self.producer``; see the module docstring for the
    delivery contract.
    """

    def __init__(
        self,
        topics: Mapping[str, type[Event]],
        group_id: str,
        handler: BatchHandler,
        settings: KafkaSettings | None = None,
        producer: EventProducer | None = None,
        start_offsets: StartOffsets | None = None,
        on_batch_consumed: Callable[[dict[tuple[str, int], int]], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        decoders: Mapping[str, Decoder] | None = None,
        **consumer_overrides: Any,
    ) -> None:
        if not topics:
            raise ValueError("ConsumerLoop needs at least one topic")
        self.settings = settings or KafkaSettings()
        self.topics = dict(topics)
        unknown = set(decoders or ()) - set(self.topics)
        if unknown:
            raise ValueError(f"decoders for topics not consumed: {sorted(unknown)}")
        #: topic -> value decoder (the event type's pydantic validation unless overridden).
        self._decoders: dict[str, Decoder] = {
            topic: _event_decoder(event_type) for topic, event_type in self.topics.items()
        }
        self._decoders.update(decoders or {})
        self.group_id = group_id
        self.handler = handler
        #: A producer made here is closed with the loop (:meth:`run`); one passed in is
        #: its owner's to close.
        self._owns_producer = producer is None
        self.producer = producer or EventProducer(self.settings)
        config = consumer_config(self.settings, group_id, **consumer_overrides)
        #: Cooperative assignors hand partitions over incrementally; eager ones
        #: (e.g. "range", which keeps co-partitioned topics together) all at once.
        self._cooperative = "cooperative" in str(config["partition.assignment.strategy"])
        self._consumer = Consumer(config)
        self._stop = threading.Event()
        self._start_offsets = start_offsets
        #: Told the next offset per partition after every batch, dead-lettered records
        #: included (a worker checkpointing its own offsets must cover those too).
        self._on_batch_consumed = on_batch_consumed
        #: Called after a poll that returned nothing while partitions are assigned.
        self._on_idle = on_idle
        self.assigned: set[tuple[str, int]] = set()
        #: Next offset per partition handled since the last commit.
        self._pending: dict[tuple[str, int], int] = {}
        self._last_commit = time.monotonic()
        self.stats = LoopStats()
        #: Backoff through a dependency's outage; a stop interrupts it (StoppedWaiting).
        self.dependency = DependencyWait(
            f"consumer group {group_id}", self._stop,
            self.settings.retry_backoff_s or 0.1, self.settings.dependency_backoff_max_s)
        #: Read / committed offsets and lag per partition, exported as gauges (see .progress).
        self.progress = ConsumerProgress(group_id)
        meter = metrics.get_meter("rtml.kafka")
        self._consumed_counter = meter.create_counter(
            "rtml_events_consumed", description="Records read from Kafka"
        )
        self._dead_letter_counter = meter.create_counter(
            "rtml_dead_letters", description="Records sent to a dead-letter topic"
        )
        self._retry_counter = meter.create_counter(
            "rtml_handler_retries", description="Handler retries after an exception"
        )
        self._retry_counter.add(0)  # exported from the start: no retries reads 0, not "no data"
        self._batch_seconds = meter.create_histogram(
            "rtml_batch_duration", unit="s", description="Time to handle and commit one batch",
            explicit_bucket_boundaries_advisory=list(DURATION_SECONDS),
        )

    # -- lifecycle ---------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its in-flight batch, commit and return."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def install_signal_handlers(self) -> None:
        """Stop gracefully on SIGTERM and SIGINT (main thread only)."""

        def _handle(signum: int, _frame: FrameType | None) -> None:
            logger.info("signal %s received: finishing in-flight batch", signum)
            self.stop()

        signal.signal(signal.SIGTERM, _handle)
        signal.signal(signal.SIGINT, _handle)

    def set_start_offsets(self, start_offsets: StartOffsets | None) -> None:
        """Replace the start-offset hook (before :meth:`run`)."""
        self._start_offsets = start_offsets

    def pause(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Stop fetching ``(topic, partition)``s until :meth:`resume`.

        Records already fetched but not yet handed over are dropped by the client
        and fetched again after :meth:`resume`, which continues right after the
        last record handed over: nothing is skipped or repeated.
        """
        self._consumer.pause([TopicPartition(topic, partition) for topic, partition in partitions])

    def resume(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Fetch paused ``(topic, partition)``s again."""
        self._consumer.resume([TopicPartition(topic, partition)
                               for topic, partition in partitions])

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start partitions where ``start_offsets`` says (e.g. a state checkpoint)."""
        if self._start_offsets is not None:
            for tp in partitions:
                offset = self._start_offsets(tp.topic, tp.partition)
                if offset is not None:
                    tp.offset = offset
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        self.assigned.update((tp.topic, tp.partition) for tp in partitions)
        logger.info("assigned %s", sorted(self.assigned))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._flush_and_commit()  # what we handled must be committed before another member resumes
        self.progress.forget(partitions)
        if self._cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()
        self.assigned.difference_update((tp.topic, tp.partition) for tp in partitions)

    def run(self, max_idle_s: float | None = None) -> LoopStats:
        """Consume until stopped (or idle for ``max_idle_s`` once assigned), then close.

        Idle time counts only while partitions are assigned: joining a group
        takes seconds and must not look like an empty topic.
        """
        self._consumer.subscribe(
            list(self.topics), on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        try:
            self._consume(max_idle_s)
        except StoppedWaiting:
            logger.info("stopped while a dependency was unavailable: the batch in hand is "
                        "not committed and will be replayed")
        finally:
            self._close()
        return self.stats

    def _consume(self, max_idle_s: float | None) -> None:
        """The poll loop of :meth:`run`."""
        idle_since = time.monotonic()
        while not self._stop.is_set():
            messages = self._consumer.consume(
                num_messages=self.settings.batch_size, timeout=self.settings.poll_timeout_s
            )
            if not messages:
                if not self.assigned:
                    idle_since = time.monotonic()
                    continue
                if max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                    break
                if self._pending and (time.monotonic() - self._last_commit
                                      >= self.settings.commit_interval_s):
                    # a burst then silence: commit what was handled now, not at the next record
                    self._flush_and_commit()
                if self._on_idle is not None:
                    self.dependency.call(self._on_idle, "the idle hook")
                continue
            idle_since = time.monotonic()
            self._process_batch(messages)

    def _close(self) -> None:
        try:
            self._flush_and_commit()
        finally:
            try:
                self._consumer.close()
            finally:
                if self._owns_producer:
                    # Flushed above when that succeeded; otherwise the batch is not
                    # committed and its outputs are dropped with the client.
                    self.producer.close(flush=False)

    # -- one batch ---------------------------------------------------------

    def _process_batch(self, messages: list[Message]) -> None:
        started = time.perf_counter()
        records: list[Record[Any]] = []
        sources: list[Message] = []
        consumed: dict[tuple[str, int], int] = {}
        per_topic: dict[str, int] = {}
        decoders = self._decoders
        for message in messages:  # the hot loop: one pass, no per-record metric calls
            error = message.error()
            if error is not None:
                self._on_client_error(error)
                continue
            topic = message.topic() or ""
            partition = message.partition() or 0
            offset = message.offset() or 0
            consumed[(topic, partition)] = offset + 1
            per_topic[topic] = per_topic.get(topic, 0) + 1
            try:
                decoder = decoders.get(topic)
                if decoder is None:
                    raise DecodeError(f"no event type configured for topic {topic!r}")
                headers = normalise_headers(message.headers())
                records.append(Record(topic, partition, offset, message.key(),
                                      decoder(message.value(), headers), headers,
                                      message.timestamp()[1]))
                sources.append(message)
            except DecodeError as exc:
                self._dead_letter(message, str(exc), "DecodeError", attempts=1)
        for topic, count in per_topic.items():
            self.stats.consumed += count
            self._consumed_counter.add(count, {"topic": topic})
        self.progress.on_batch(messages, consumed)
        if records:
            self._handle_with_retries(records, sources)
        self._pending.update(consumed)
        if self._on_batch_consumed is not None and consumed:
            self._on_batch_consumed(consumed)
        if time.monotonic() - self._last_commit >= self.settings.commit_interval_s:
            self._flush_and_commit()
        self.stats.batches += 1
        self._batch_seconds.record(time.perf_counter() - started)

    def _decode(self, message: Message) -> Record[Any]:
        """One message as a :class:`Record` (the batch loop inlines this)."""
        topic = message.topic() or ""
        decoder = self._decoders.get(topic)
        if decoder is None:
            raise DecodeError(f"no event type configured for topic {topic!r}")
        headers = normalise_headers(message.headers())
        return Record(
            topic=topic,
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            key=message.key(),
            value=decoder(message.value(), headers),
            headers=headers,
            timestamp_ms=message.timestamp()[1],
        )

    def _handle_with_retries(self, records: list[Record[Any]], sources: list[Message]) -> None:
        error = self._attempt(records)
        if error is None:
            self.stats.handled += len(records)
            return
        if len(records) == 1:
            self._dead_letter_failed(sources[0], error)
            return
        # Isolate the poison record(s): each record gets its own retries.
        for record, source in zip(records, sources, strict=True):
            error = self._attempt([record])
            if error is None:
                self.stats.handled += 1
            else:
                self._dead_letter_failed(source, error)

    def _attempt(self, records: list[Record[Any]]) -> BaseException | None:
        """Run the handler until it succeeds or fails ``max_retries + 1`` times on its own;
        return the last error, or None.

        A dependency's outage is waited out without a bound and not counted
        (see the module docstring, point 4); a stop during that wait raises
        :class:`StoppedWaiting` out of here, leaving the batch uncommitted.
        """
        delay = self.settings.retry_backoff_s
        failures = 0
        while True:
            try:
                self.handler(records)
            except Exception as exc:
                if is_outage(exc):
                    self.stats.dependency_waits += 1
                    self.dependency.failed(exc, f"{len(records)} record(s) held")
                    continue
                self.dependency.recovered()  # it answered: whatever failed now is not it
                failures += 1
                logger.warning(
                    "handler failed on %d record(s) (attempt %d/%d): %r",
                    len(records), failures, self.settings.max_retries + 1, exc,
                )
                if failures > self.settings.max_retries:
                    return exc  # retried, then isolated / dead-lettered by the caller
                self.stats.retries += 1
                self._retry_counter.add(1)
                time.sleep(delay)
                delay *= 2
                continue
            self.dependency.recovered()
            return None

    def _dead_letter_failed(self, source: Message, error: BaseException) -> None:
        attempts = self.settings.max_retries + 1
        self._dead_letter(
            source,
            f"handler error after {attempts} attempts: {type(error).__name__}: {error}",
            type(error).__name__,
            attempts=attempts,
        )

    def _dead_letter(self, message: Message, reason: str, error_type: str, attempts: int) -> None:
        topic, key, value, headers = dead_letter_record(
            message, self.group_id, reason, error_type, attempts
        )
        # Fitted to the producer's size limit; a refusal is settled at the next flush
        # (retried, then minimal, then logged undeliverable), never raised from here.
        self.producer.send_dead_letter(topic, key, value, headers)
        self.stats.dead_lettered += 1
        self._dead_letter_counter.add(
            1, {"topic": message.topic() or "", "error_type": error_type}
        )
        logger.warning(
            "dead-lettered %s[%s]@%s: %s",
            message.topic(), message.partition(), message.offset(), reason,
        )

    def _flush_and_commit(self) -> None:
        """Wait for every produced record, then commit the handled offsets (synchronously)."""
        self.producer.flush()
        self._last_commit = time.monotonic()
        if not self._pending:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._pending.items()]
        self._pending = {}
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
            self.stats.commits += 1
            self.progress.on_commit(offsets)
        except KafkaException as exc:
            # A commit lost to a rebalance means the batch is replayed: safe (idempotent).
            logger.warning("commit failed, batches will be redelivered: %s", exc)

    def _on_client_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        if error.code() != KafkaError._PARTITION_EOF:
            logger.warning("consumer error: %s", error)
