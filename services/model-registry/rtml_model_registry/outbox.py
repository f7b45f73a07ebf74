"""Every audit entry's ``model-events`` record gets delivered, in order, eventually.

The audit log doubles as an outbox (transactional-outbox pattern): an alias
change is first recorded, then its event is published and the outcome
appended beside the entry. Entries without a successful delivery stay
*pending* and are retried on the next change of the same model, at start-up
and every ``republish_interval_s`` by :class:`Republisher`.

Order matters more than completeness for a scorer: if an older entry's event
were delivered after a newer one for the same alias, scorers would switch
back to an outdated version. So a pending entry with a later entry for the
same model and alias is marked *superseded* instead of sent; the later
entry's event carries the current state.
"""

from __future__ import annotations

import logging
import threading

from rtml_model_registry.audit.base import AuditEntry, AuditLog, DeliveryStatus
from rtml_model_registry.events import EventNotDelivered, EventPublisher, event_for
from rtml_model_registry.locking import KeyedLocks

logger = logging.getLogger(__name__)


class Outbox:
    """Publishes pending audit entries and records the outcome of each attempt."""

    def __init__(self, audit: AuditLog, publisher: EventPublisher, locks: KeyedLocks) -> None:
        self.audit = audit
        self.publisher = publisher
        self.locks = locks

    def deliver(self, model: str) -> dict[int, DeliveryStatus]:
        """Publish ``model``'s pending entries, oldest first; the caller holds its lock."""
        pending = self.audit.pending(model)
        if not pending:
            return {}
        newest: dict[str, int] = {}
        for entry in self.audit.entries(model):
            newest[entry.alias] = entry.id
        outcome: dict[int, DeliveryStatus] = {}
        for entry in pending:
            outcome[entry.id] = self._deliver_one(entry, newest[entry.alias])
        return outcome

    def _deliver_one(self, entry: AuditEntry, newest_id: int) -> DeliveryStatus:
        if newest_id != entry.id:
            self.audit.record_delivery(
                entry.id, DeliveryStatus.SUPERSEDED,
                f"entry {newest_id} announces a newer state of {entry.model}@{entry.alias}")
            return DeliveryStatus.SUPERSEDED
        try:
            self.publisher.publish(event_for(entry))
        except EventNotDelivered as exc:
            self.audit.record_delivery(entry.id, DeliveryStatus.FAILED, str(exc))
            logger.warning("model-events record of audit entry %d not delivered: %s",
                           entry.id, exc)
            return DeliveryStatus.FAILED
        self.audit.record_delivery(entry.id, DeliveryStatus.DELIVERED)
        return DeliveryStatus.DELIVERED

    def deliver_all(self) -> dict[int, DeliveryStatus]:
        """Every model's pending entries, each model under its lock."""
        outcome: dict[int, DeliveryStatus] = {}
        for model in sorted({entry.model for entry in self.audit.pending()}):
            with self.locks.hold(model):
                outcome.update(self.deliver(model))
        return outcome


class Republisher:
    """A daemon thread calling :meth:`Outbox.deliver_all` once at start, then every ``interval_s``.

    The first pass announces what a previous run of the service could not
    (it crashed or Kafka was down); ``interval_s=0`` makes it the only one.
    """

    def __init__(self, outbox: Outbox, interval_s: float) -> None:
        self.outbox = outbox
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="model-events-republisher",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                self.outbox.deliver_all()
            except Exception:  # keep retrying; the next pass may find Kafka back
                logger.exception("re-publishing pending model-events records failed")
            if self.interval_s <= 0 or self._stop.wait(self.interval_s):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
