"""Outbox ordering: an older undelivered change is never announced after a newer one.

The publisher here is an in-memory stand-in on purpose: what is tested is
which entries the outbox sends and in what order, not Kafka (the Kafka path
is exercised against a real broker in test_aliases.py).
"""

from __future__ import annotations

from pathlib import Path

from rtml_common.events import ModelEvent
from rtml_model_registry.audit.base import AuditAction, DeliveryStatus, NewAuditEntry
from rtml_model_registry.audit.sqlite import SqliteAuditLog
from rtml_model_registry.events import EventNotDelivered
from rtml_model_registry.locking import KeyedLocks
from rtml_model_registry.outbox import Outbox


class Recorder:
    """Delivers (records) events, or refuses them while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.sent: list[ModelEvent] = []

    def publish(self, event: ModelEvent) -> None:
        if self.down:
            raise EventNotDelivered("broker down")
        self.sent.append(event)

    def close(self) -> None:
        pass


def entry(alias: str, frm: str | None, to: str | None, model: str = "fraud") -> NewAuditEntry:
    return NewAuditEntry(model, alias, frm, to, AuditAction.SET, "alice", "why")


def test_pending_entries_are_sent_in_order_and_stale_ones_superseded(tmp_path: Path) -> None:
    audit = SqliteAuditLog(tmp_path / "audit.sqlite")
    publisher = Recorder()
    outbox = Outbox(audit, publisher, KeyedLocks())
    publisher.down = True
    first = audit.append(entry("champion", None, "1"))
    assert outbox.deliver("fraud") == {first.id: DeliveryStatus.FAILED}
    shadow = audit.append(entry("shadow", None, "5"))
    second = audit.append(entry("champion", "1", "2"))
    other = audit.append(entry("champion", None, "7", model="other"))

    publisher.down = False
    assert outbox.deliver_all() == {
        first.id: DeliveryStatus.SUPERSEDED,  # champion moved on to v2 since
        shadow.id: DeliveryStatus.DELIVERED,
        second.id: DeliveryStatus.DELIVERED,
        other.id: DeliveryStatus.DELIVERED,
    }
    assert [(e.model_name, e.alias, e.version) for e in publisher.sent] == [
        ("fraud", "shadow", "5"), ("fraud", "champion", "2"), ("other", "champion", "7")]
    assert [e.event_id for e in publisher.sent[:2]] == [shadow.entry_hash, second.entry_hash]
    assert audit.pending() == []
    assert outbox.deliver_all() == {}
    deliveries = audit.deliveries([first.id])
    assert deliveries[first.id].detail == "entry 3 announces a newer state of fraud@champion"
