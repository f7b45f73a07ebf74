"""Announce alias changes on ``model-events`` so scorers hot-reload.

Each audit entry maps to exactly one :class:`~rtml_common.events.ModelEvent`
whose ``event_id`` is the entry's hash: a record re-published after a failed
attempt carries the same id, so consumers can drop duplicates. Records are
keyed by model name (the topic's key), so one model's changes stay in order
on one partition.

Delivery is confirmed before an API call answers: the producer's own
retries run within ``timeout_s`` (``message.timeout.ms``), and a record
still undelivered after it raises :class:`EventNotDelivered`. What the
service does then (the alias has already moved) is in
:mod:`rtml_model_registry.outbox`.
"""

from __future__ import annotations

import threading
from typing import Protocol

from confluent_kafka import KafkaException

from rtml_common.config import KafkaSettings
from rtml_common.events import ModelEvent, ModelEventKind
from rtml_common.kafka.producer import DeliveryError, EventProducer
from rtml_model_registry import SERVICE_NAME
from rtml_model_registry.audit.base import AuditAction, AuditEntry


class EventNotDelivered(RuntimeError):
    """The broker did not acknowledge a ``model-events`` record in time."""


def event_for(entry: AuditEntry) -> ModelEvent:
    """The ``model-events`` record announcing ``entry``."""
    removed = entry.action is AuditAction.REMOVE
    reason = f"rollback: {entry.reason}" if entry.action is AuditAction.ROLLBACK else entry.reason
    return ModelEvent(
        event_id=entry.entry_hash,
        kind=ModelEventKind.ALIAS_REMOVED if removed else ModelEventKind.ALIAS_SET,
        model_name=entry.model,
        version=entry.from_version if removed else entry.to_version,
        alias=entry.alias,
        previous_version=entry.from_version,
        actor=entry.actor,
        reason=reason,
        occurred_at=entry.at,
    )


class EventPublisher(Protocol):
    """Publishes one event and returns only once it is delivered."""

    def publish(self, event: ModelEvent) -> None:
        """Deliver ``event`` or raise :class:`EventNotDelivered`."""
        ...

    def close(self) -> None:
        """Release the client."""
        ...


class KafkaEventPublisher:
    """:class:`EventPublisher` over rtml_common's :class:`EventProducer`.

    After a failed delivery the client is replaced by a new one: with
    idempotence on, a record that timed out leaves librdkafka in a fatal
    state that no retry recovers from, so the next attempt (the outbox's) must
    start from a fresh producer.
    """

    def __init__(self, settings: KafkaSettings, timeout_s: float) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        # One record in flight at a time: a flush failure then belongs to this record.
        self._lock = threading.Lock()
        self._closed = False
        self._producer: EventProducer | None = None

    def _new_producer(self) -> EventProducer:
        return EventProducer(
            self.settings, **{"message.timeout.ms": int(self.timeout_s * 1000),
                              "client.id": f"{self.settings.client_id}-{SERVICE_NAME}"})

    def publish(self, event: ModelEvent) -> None:
        with self._lock:
            if self._closed:
                raise EventNotDelivered("the publisher is closed")
            if self._producer is None:
                self._producer = self._new_producer()
            try:
                self._producer.send(event)
                # A little beyond message.timeout.ms, so librdkafka reports the failure.
                self._producer.flush(self.timeout_s + 2.0)
            except (DeliveryError, KafkaException, BufferError) as exc:
                self._producer = None  # see the class docstring
                raise EventNotDelivered(str(exc)) from exc

    def close(self) -> None:
        """Release the client (its threads and connections).

        Nothing is ever queued between calls (``publish`` waits for its record),
        so there is nothing to flush; flushing a producer in librdkafka's fatal
        state can block regardless of its timeout.
        """
        with self._lock:
            self._producer, self._closed = None, True
