"""The decision-log contract: one small interface, one folder per backend.

Contract every backend honours:

* :meth:`DecisionLog.write_many` is idempotent: the transaction id
  identifies a row, so the log writer's at-least-once replays (and a
  decision re-made while Redis was down) overwrite instead of duplicating.
* A write returns only once the backend accepted every row; it raises
  otherwise, so the writer does not commit its Kafka offsets.
* :meth:`DecisionLog.read` returns the newest decisions first, bounded by
  ``limit`` and optionally by the transactions' event time, for backtests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from rtml_common.events import Decision


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    """A decision and the inputs it was made with (features, score, request fields)."""

    decision: Decision
    inputs: dict[str, Any]


def to_frame(rows: Sequence[LoggedDecision]) -> pd.DataFrame:
    """The backtest's input: ``transaction_id``, ``outcome``, the inputs, decision metadata."""
    records = []
    for row in rows:
        d = row.decision
        records.append({**row.inputs, "transaction_id": d.transaction_id,
                        "outcome": str(d.outcome), "score": d.score,
                        "rule_set_version": d.rule_set_version, "degraded": d.degraded,
                        "decided_at": d.decided_at, "event_time": d.event_time})
    return pd.DataFrame.from_records(records)


class DecisionLog(ABC):
    """Storage of decisions, written by the log writer and read by backtests."""

    @abstractmethod
    def write_many(self, rows: Sequence[LoggedDecision]) -> None:
        """Store every row (idempotent per transaction id); raise if any was not stored."""

    @abstractmethod
    def read(self, limit: int, since: datetime | None = None,
             until: datetime | None = None) -> list[LoggedDecision]:
        """Up to ``limit`` decisions, newest first, of transactions in [since, until)."""

    def read_frame(self, limit: int, since: datetime | None = None,
                   until: datetime | None = None) -> pd.DataFrame:
        """:meth:`read` as the backtest's data frame."""
        return to_frame(self.read(limit, since, until))

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
