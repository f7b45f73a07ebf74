"""The append-only, hash-chained log of alias changes: contract (``base``) and backends."""

from rtml_model_registry.audit.base import (
    AuditAction,
    AuditEntry,
    AuditLog,
    ChainStatus,
    Delivery,
    DeliveryStatus,
    NewAuditEntry,
)

__all__ = ["AuditAction", "AuditEntry", "AuditLog", "ChainStatus", "Delivery",
           "DeliveryStatus", "NewAuditEntry"]
