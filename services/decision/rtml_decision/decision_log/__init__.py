"""The decision log: every decision with its inputs, for audit and rule backtests.

:mod:`.base` is the contract; one folder per backend (``cassandra``).
"""

from rtml_decision.decision_log.base import DecisionLog, LoggedDecision

__all__ = ["DecisionLog", "LoggedDecision"]
