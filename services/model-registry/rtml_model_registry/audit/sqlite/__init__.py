"""The SQLite audit-log backend."""

from rtml_model_registry.audit.sqlite.store import SqliteAuditLog

__all__ = ["SqliteAuditLog"]
