"""A producer that never loses a delivery failure silently.

confluent-kafka reports delivery results asynchronously through callbacks
served by ``poll``/``flush``; a caller that forgets them believes a failed
write succeeded. :class:`EventProducer` records every failed delivery and
:meth:`EventProducer.flush` raises :class:`DeliveryError` listing them, so a
consumer loop commits its input offsets only after its outputs are durable.

Idempotence (``enable.idempotence``) is on, so the client's own retries never
duplicate or reorder a record within a session; ``acks=all`` waits for the in-sync
replicas. With idempotence off (``RTML_KAFKA_IDEMPOTENT_PRODUCER=false``) one
request is in flight per connection, so retries still cannot reorder a partition.

Dead letters (:meth:`EventProducer.send_dead_letter`, and :meth:`EventProducer.send_raw`
to any ``<topic>.dlq``) must never fail the consumer that writes them: a
consumer that cannot dead-letter a record can neither skip nor commit it, and
every restart would die on it again. So a dead letter is first cut to fit this
producer's ``message.max.bytes`` (:func:`~rtml_common.kafka.dead_letter.fit_dead_letter`),
and one the broker still refuses (any reason: a lower broker limit, a topic
that cannot be created, no authorization) is settled inside :meth:`EventProducer.flush`,
before the caller commits: the full record is retried ``max_retries`` times
with the consumer loop's backoff, then a
:func:`~rtml_common.kafka.dead_letter.minimal_dead_letter` (failure, source
coordinates, sizes and SHA-256 digests; no original bytes) is tried
``1 + max_retries`` times. Bounded: at most ``2 * (1 + max_retries)`` attempts
in all and ``2 * retry_backoff_s * (2**max_retries - 1)`` of waiting (2.8 s
with the defaults), each flush waiting at most ``flush_timeout_s``. If even
that is refused, the record is declared undeliverable: an ERROR log
line names its source coordinates, size, digest and reason, and
``rtml_dead_letter_fallbacks_total{outcome="undeliverable"}`` counts it — the
original stays at those coordinates in its source topic. Never skipped
silently, never a crash loop. A flush that finds other records failed (or
still in flight) raises :class:`DeliveryError` as before, dead letters
included, without settling: nothing is committed, the batch is replayed.

Trace context: :meth:`EventProducer.send` (typed events, never a hot path)
adds the active span's W3C ``traceparent`` / ``tracestate`` headers by itself
(:mod:`rtml_common.tracing`; nothing when no span is active). The raw paths
take headers as given; :meth:`EventProducer.send_many` accepts per-record
extra headers for the records of a batch that carry a trace.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from opentelemetry import metrics

from rtml_common.config import KafkaSettings
from rtml_common.events import Event
from rtml_common.kafka.dead_letter import (
    ORIGINAL_BYTES,
    ORIGINAL_SHA256,
    REASON,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    fit_dead_letter,
    minimal_dead_letter,
)
from rtml_common.kafka.headers import HeaderList
from rtml_common.serde import Headers, encode, header_value, headers_for
from rtml_common.topics import DEAD_LETTER_SUFFIX, spec_for_event
from rtml_common.tracing import current_trace_headers

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FailedDelivery:
    """One record the broker did not accept, with the client's reason."""

    topic: str
    key: bytes | None
    reason: str


class DeliveryError(RuntimeError):
    """Raised by :meth:`EventProducer.flush` when records were not delivered."""

    def __init__(self, failures: Sequence[FailedDelivery], undelivered: int = 0) -> None:
        self.failures = list(failures)
        self.undelivered = undelivered
        sample = "; ".join(f"{f.topic}: {f.reason}" for f in self.failures[:3])
        detail = f"{len(self.failures)} record(s) failed"
        if undelivered:
            detail += f", {undelivered} still in flight after the flush timeout"
        super().__init__(f"{detail}: {sample}" if sample else detail)


@dataclass
class _DeadLetter:
    """A dead letter being delivered: the fitted record, and what to send next."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: HeaderList
    minimal: bool = False

    def minimal_form(self, delivery_error: str) -> _DeadLetter:
        key, value, headers = minimal_dead_letter(self.key, self.value, self.headers,
                                                  delivery_error)
        return _DeadLetter(self.topic, key, value, headers, minimal=True)

    def describe(self) -> str:
        """Where the original is, how big it was and why it failed (for log lines)."""

        def text(name: str) -> str:
            return (header_value(self.headers, name) or b"?").decode(errors="replace")

        size = header_value(self.headers, ORIGINAL_BYTES)
        digest = header_value(self.headers, ORIGINAL_SHA256)
        return (f"{text(SOURCE_TOPIC)}[{text(SOURCE_PARTITION)}]@{text(SOURCE_OFFSET)}, "
                f"value {size.decode() if size else len(self.value or b'')} bytes"
                f"{', sha256 ' + digest.decode() if digest else ''}, reason: {text(REASON)}")


@dataclass
class DeadLetterStats:
    """What happened to this producer's dead letters (tests, logs)."""

    sent: int = 0
    #: Cut to fit ``message.max.bytes`` (:func:`~rtml_common.kafka.dead_letter.fit_dead_letter`).
    truncated: int = 0
    #: Refused at first, delivered by a retry of the full record.
    retried: int = 0
    #: Delivered only as a minimal dead letter.
    minimal: int = 0
    #: Refused in every form: logged at ERROR with coordinates, size and digest.
    undeliverable: int = 0


def producer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """librdkafka properties for a reliable producer.

    ``message.max.bytes`` is ``RTML_KAFKA_MAX_MESSAGE_BYTES``: the one size limit
    the services' producers, dead letters, consumer fetches and created topics
    agree on (``RTML_KAFKA_EXTRA`` or ``overrides`` may still set it; dead letters
    fit whatever the producer ends up with, :attr:`EventProducer.max_message_bytes`).
    """
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "message.max.bytes": settings.max_message_bytes,
        "client.id": f"{settings.client_id}-producer",
        "enable.idempotence": settings.idempotent_producer,
        "acks": "all",
        # 20 ms, not 5: many small produce requests queue up on a broker whose per-request
        # cost grows with its log (the local Tansu broker: at 2,000 records/s, linger 5 ms
        # took produce->consume p99 from 12 ms to 2.4 s within 60 s; 20 ms held 23-38 ms,
        # bench/broker_latency.py). Batches this size cost Apache Kafka nothing either.
        "linger.ms": 20,
        "compression.type": "lz4",
        # The Java client's key -> partition mapping (murmur2), not librdkafka's default
        # CRC32: records keyed alike land on the same partition number whichever client
        # produced them — the Flink job's sink (Java), Faust (aiokafka) and these — so topics
        # stay co-partitioned (the scorer's River challengers join features and labels).
        "partitioner": "murmur2_random",
        # Bounded: a broker outage surfaces as a delivery error, not a hang.
        "message.timeout.ms": int(settings.flush_timeout_s * 1000),
    }
    if not settings.idempotent_producer:
        # Without idempotence nothing keeps retried requests in order: a retry after a broker
        # restart could land behind a later batch and reorder the partition. One request in
        # flight keeps the order (idempotence keeps it with up to five).
        config["max.in.flight.requests.per.connection"] = 1
    config.update(settings.extra)
    config.update(overrides)
    return config


class EventProducer:
    """Produces typed events (or pre-encoded bytes) and surfaces delivery failures.

    Thread-safe for ``send``; call :meth:`flush` at a commit point and :meth:`close` (or
    leave the ``with`` block) when done, so no client outlives its use.
    """

    def __init__(self, settings: KafkaSettings | None = None, **overrides: Any) -> None:
        self.settings = settings or KafkaSettings()
        # Delivery reports for failures only: a success needs no action here (``flush``
        # counts what is still in flight), and a Python callback per delivered record
        # cost ~0.4 µs of a ~2.4 µs produce on the scorer's hot path.
        config = {"delivery.report.only.error": True,
                  **producer_config(self.settings, **overrides)}
        self._producer = Producer(config)
        self._closed = False
        #: The record size limit librdkafka enforces here; dead letters are fitted to it.
        self.max_message_bytes = int(config.get("message.max.bytes", 1_000_000))
        self._failures: list[FailedDelivery] = []
        self._dead_letter_failures: list[tuple[_DeadLetter, str]] = []
        self._lock = threading.Lock()
        self._headers_cache: dict[type[Event], Headers] = {}
        self.dead_letter_stats = DeadLetterStats()
        meter = metrics.get_meter("rtml.kafka")
        self._truncated_counter = meter.create_counter(
            "rtml_dead_letters_truncated",
            description="Dead letters cut to fit the size limit (digest and size in headers)")
        self._fallback_counter = meter.create_counter(
            "rtml_dead_letter_fallbacks",
            description="Dead letters the broker refused: delivered on retry, as a minimal "
                        "record, or undeliverable (logged with coordinates and digest)")

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            return
        with self._lock:
            self._failures.append(FailedDelivery(message.topic() or "?", message.key(), str(error)))

    def send(self, event: Event, topic: str | None = None, key: bytes | None = None) -> None:
        """Queue ``event`` on its topic (default from :mod:`rtml_common.topics`).

        The active span's trace context, if any, goes into the headers.
        """
        event_type = type(event)
        if topic is None or key is None:
            spec = spec_for_event(event_type)
            topic = topic or spec.name
            key = key if key is not None else spec.key_of(event)
        headers = self._headers_cache.get(event_type)
        if headers is None:
            headers = self._headers_cache[event_type] = headers_for(event_type)
        traced = current_trace_headers()
        self.send_raw(topic, key, encode(event), [*headers, *traced] if traced else headers)

    def send_raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
    ) -> None:
        """Queue pre-encoded bytes; waits (serving callbacks) while the local queue is full.

        A ``<topic>.dlq`` record goes through :meth:`send_dead_letter`.
        """
        if topic.endswith(DEAD_LETTER_SUFFIX):
            self.send_dead_letter(topic, key, value, headers)
            return
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=list(headers or ()),
                    on_delivery=self._on_delivery,
                )
                break
            except BufferError:
                # Local queue full: serve delivery reports to make room, then retry.
                self._producer.poll(0.1)
        self._producer.poll(0)

    def send_dead_letter(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
    ) -> None:
        """Queue a dead letter (original headers, then ``rtml-dlq-*`` ones), fitted to
        :attr:`max_message_bytes`; :meth:`flush` settles one the broker refuses
        (module docstring). Never raises for the record itself."""
        fitted_key, fitted_value, fitted_headers = fit_dead_letter(
            key, value, list(headers or ()), self.max_message_bytes)
        self.dead_letter_stats.sent += 1
        if fitted_key is not key or fitted_value is not value:
            self.dead_letter_stats.truncated += 1
            self._truncated_counter.add(1, {"topic": topic})
            logger.warning("dead letter to %s cut to fit %d bytes: %s", topic,
                           self.max_message_bytes, dict(fitted_headers).get("rtml-dlq-truncated"))
        self._produce_dead_letter(_DeadLetter(topic, fitted_key, fitted_value, fitted_headers))

    def _produce_dead_letter(self, letter: _DeadLetter) -> None:
        """Queue ``letter``; a refusal (now or at delivery) is kept for :meth:`flush`."""

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                with self._lock:
                    self._dead_letter_failures.append((letter, str(error)))

        while True:
            try:
                self._producer.produce(letter.topic, value=letter.value, key=letter.key,
                                       headers=list[Any](letter.headers),
                                       on_delivery=on_delivery)
                break
            except BufferError:
                self._producer.poll(0.1)  # local queue full: serve delivery reports, retry
            except KafkaException as exc:  # refused locally (size, topic name, ...)
                with self._lock:
                    self._dead_letter_failures.append((letter, str(exc.args[0])))
                break
        self._producer.poll(0)

    def send_many(
        self,
        topic: str,
        records: Iterable[tuple[bytes | None, bytes | None]],
        headers: Sequence[tuple[str, bytes | None]] | None = None,
        extra_headers: Mapping[int, Sequence[tuple[str, bytes]]] | None = None,
    ) -> int:
        """Queue pre-encoded ``(key, value)`` pairs on ``topic``, all with ``headers``.

        :meth:`send_raw` for a batch: the same delivery tracking, but one local
        call per record and one ``poll`` for the whole batch instead of one per
        record. ``extra_headers`` (record index -> headers, e.g. a record's
        trace context from :func:`rtml_common.tracing.record_spans`) are
        appended to those records only. Returns how many records were queued.
        """
        producer = self._producer
        produce = producer.produce
        on_delivery = self._on_delivery
        header_list: Any = list(headers or ())  # copied into each message by the client
        count = 0
        for key, value in records:
            record_headers = header_list
            if extra_headers:
                extra = extra_headers.get(count)
                if extra:
                    record_headers = [*header_list, *extra]
            while True:
                try:
                    produce(topic, value, key, headers=record_headers, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.1)  # local queue full: serve delivery reports, retry
            count += 1
        producer.poll(0)
        return count

    def failures(self) -> list[FailedDelivery]:
        """Failures recorded since the last :meth:`flush` (a copy)."""
        with self._lock:
            return list(self._failures)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait for every queued record; raise :class:`DeliveryError` if any failed.

        Dead letters the broker refused, when nothing else failed, are settled
        first (retried, then minimal, then logged undeliverable; module docstring).
        """
        timeout = self.settings.flush_timeout_s if timeout_s is None else timeout_s
        remaining = self._producer.flush(timeout)
        with self._lock:
            failures, self._failures = self._failures, []
            refused, self._dead_letter_failures = self._dead_letter_failures, []
        if failures or remaining:
            raise DeliveryError(
                [*failures, *(FailedDelivery(letter.topic, letter.key, error)
                              for letter, error in refused)],
                undelivered=remaining)
        if refused:
            self._settle_dead_letters(refused, timeout)

    def _settle_dead_letters(self, refused: list[tuple[_DeadLetter, str]],
                             timeout_s: float) -> None:
        """Deliver refused dead letters in a bounded number of rounds, or log them."""
        retries = self.settings.max_retries
        backoff = self.settings.retry_backoff_s
        # (send the minimal form?, delay before the round): the full record's retries,
        # then the minimal record's first try and its retries, each stage's delays doubling.
        rounds = ([(False, backoff * 2 ** i) for i in range(retries)]
                  + [(True, 0.0)] + [(True, backoff * 2 ** i) for i in range(retries)])
        pending = refused
        for minimal, delay in rounds:
            time.sleep(delay)
            sent: list[_DeadLetter] = []
            for letter, error in pending:
                logger.warning("dead letter refused (%s): %s; sending it %s", error,
                               letter.describe(), "minimal" if minimal else "again")
                sent.append(letter if letter.minimal or not minimal
                            else letter.minimal_form(error))
                self._produce_dead_letter(sent[-1])
            remaining = self._producer.flush(timeout_s)
            with self._lock:
                pending, self._dead_letter_failures = self._dead_letter_failures, []
            if remaining:  # outcome unknown: the caller must not commit
                raise DeliveryError([FailedDelivery(letter.topic, letter.key, error)
                                     for letter, error in pending], undelivered=remaining)
            still_refused = {id(letter) for letter, _ in pending}
            outcome = "minimal" if minimal else "retried"
            for letter in sent:
                if id(letter) not in still_refused:
                    setattr(self.dead_letter_stats, outcome,
                            getattr(self.dead_letter_stats, outcome) + 1)
                    self._fallback_counter.add(1, {"topic": letter.topic, "outcome": outcome})
            if not pending:
                return
        for letter, error in pending:
            self.dead_letter_stats.undeliverable += 1
            self._fallback_counter.add(1, {"topic": letter.topic, "outcome": "undeliverable"})
            logger.error("dead letter undeliverable to %s after %d attempts (last error: %s); "
                         "the original stays at its source coordinates: %s",
                         letter.topic, len(rounds) + 1, error, letter.describe())

    def close(self, flush: bool = True) -> None:
        """Flush (unless ``flush`` is false: what is queued is dropped), then release the
        client even if the flush raised; a second call is a no-op.

        A flushed but unreleased librdkafka client keeps its broker connections and
        reconnects, logging ``Connection refused``, for as long as it lives once the
        broker is gone; so an owner closes its producer when it is done with it.
        """
        if self._closed:
            return
        try:
            if flush:
                self.flush()
        finally:
            self._release()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` released the client (sends then raise RuntimeError)."""
        return self._closed

    def _release(self) -> None:
        """Drop what is still queued (an unreachable broker would hold it until
        ``message.timeout.ms``) and close the client; later sends raise RuntimeError."""
        self._closed = True
        if len(self._producer):
            self._producer.purge()
        self._producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        elif not self._closed:
            # Still try to deliver what was queued, without masking the original error.
            self._producer.flush(self.settings.flush_timeout_s)
            self._release()
