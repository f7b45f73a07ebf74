"""Cassandra backend of the decision log."""

from rtml_decision.decision_log.cassandra.store import CassandraDecisionLog, connect

__all__ = ["CassandraDecisionLog", "connect"]
