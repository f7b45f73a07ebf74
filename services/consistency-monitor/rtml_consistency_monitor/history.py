"""The sampled entities' transactions and first labels, within the feature set's horizon.

What is kept: every transaction whose customer *or* terminal is sampled
(for whichever entity kinds the feature set aggregates per), deduplicated by
transaction id (the topics are at-least-once), and every label of such a
transaction, the first one known per transaction winning (earliest
``labeled_at``; on a tie the one read first) — the batch engine's and the
streaming engine's rule. A label may arrive before its transaction: it carries
the customer and terminal ids, so it is kept on its own merits.

What is dropped: events older than the slower of the decisions' and the
transactions' watermarks minus the feature set's longest horizon minus
``decision_lateness`` (and older than any pending decision's window): no
decision still to come can look that far back. :attr:`History.complete_after` says from when
on the history is complete: a decision whose window starts earlier (it came
too late, or the monitor started after its window had begun) is not checked
but counted ``incomplete`` — comparing it would report the monitor's gap as a
mismatch.

Where the monitor starts: a partition whose first record read is at offset 0
was read from its beginning, so it contributes no gap; otherwise events
before its first record were missed, up to that record's event time plus the
allowed lateness (records may arrive that much out of order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

NO_TIME = -(2**62)


@dataclass(frozen=True, slots=True)
class StoredTransaction:
    time_ms: int
    customer_id: str
    terminal_id: str | None
    amount: float


@dataclass(frozen=True, slots=True)
class StoredLabel:
    labeled_at_ms: int
    is_fraud: bool
    transaction_time_ms: int


class StartBound:
    """From which event time on one topic has been read completely since start-up."""

    def __init__(self, lateness_ms: int) -> None:
        self.lateness_ms = lateness_ms
        self._first: dict[int, int] = {}

    def observe(self, partition: int, offset: int, event_ms: int) -> None:
        if partition not in self._first:
            self._first[partition] = NO_TIME if offset == 0 else event_ms + self.lateness_ms

    @property
    def value(self) -> int:
        """Events after this time are all read (NO_TIME: everything since the beginning)."""
        return max(self._first.values(), default=NO_TIME)


#: An entity as ``(transaction field holding its id, id)``, e.g. ``("customer_id", "c42")``.
EntityKey = tuple[str, str]


class History:
    """Sampled transactions and labels, evicted behind the watermark.

    Indexed by entity too, so a batch of checks reads only the history of the
    entities it checks, not the whole sample.
    """

    def __init__(self, lateness_ms: int) -> None:
        self.transactions: dict[str, StoredTransaction] = {}
        self._by_entity: dict[EntityKey, set[str]] = {}
        self.labels: dict[str, StoredLabel] = {}
        self.transaction_start = StartBound(lateness_ms)
        self.label_start = StartBound(lateness_ms)
        #: Events at or before this time may have been evicted.
        self.evicted_through = NO_TIME
        self.duplicates = 0

    @property
    def complete_after(self) -> int:
        """Every transaction and label with a time after this is held (if sampled)."""
        return max(self.evicted_through, self.transaction_start.value, self.label_start.value)

    def add_transaction(self, transaction_id: str, tx: StoredTransaction) -> None:
        if transaction_id in self.transactions:
            self.duplicates += 1
            return
        self.transactions[transaction_id] = tx
        for key in _entity_keys(tx):
            self._by_entity.setdefault(key, set()).add(transaction_id)

    def add_label(self, transaction_id: str, label: StoredLabel) -> None:
        """Keep the earliest known label of a transaction (ties: the first read)."""
        known = self.labels.get(transaction_id)
        if known is None or label.labeled_at_ms < known.labeled_at_ms:
            self.labels[transaction_id] = label

    def label_known(self, transaction_id: str, at_ms: int) -> bool:
        """Whether the transaction's first label says fraud and was known by ``at_ms``."""
        label = self.labels.get(transaction_id)
        return label is not None and label.is_fraud and label.labeled_at_ms <= at_ms

    def evict_through(self, cutoff_ms: int) -> int:
        """Drop transactions (and labels of transactions) at or before ``cutoff_ms``."""
        if cutoff_ms <= self.evicted_through:
            return 0
        old = [tid for tid, tx in self.transactions.items() if tx.time_ms <= cutoff_ms]
        for tid in old:
            for key in _entity_keys(self.transactions.pop(tid)):
                ids = self._by_entity[key]
                ids.discard(tid)
                if not ids:
                    del self._by_entity[key]
        for tid in [tid for tid, lab in self.labels.items()
                    if lab.transaction_time_ms <= cutoff_ms]:
            del self.labels[tid]
        self.evicted_through = cutoff_ms
        return len(old)

    def frames(self, after_ms: int, through_ms: int,
               entities: set[EntityKey] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Transactions with time in ``(after_ms, through_ms]`` (of ``entities`` only, if
        given) and their labels, as the batch engine's ``history`` and ``labels`` frames.

        The frames' ``transaction_id`` is the row number, not the id: the engine uses
        it only to join labels, and joining int64 keys costs a fraction of strings
        (tens of milliseconds per call otherwise)."""
        ids: list[str] = []
        times: list[int] = []
        customers: list[str] = []
        terminals: list[str | None] = []
        amounts: list[float] = []
        if entities is None:
            candidates: set[str] | dict[str, StoredTransaction] = self.transactions
        else:
            candidates = set()
            for key in entities:
                candidates |= self._by_entity.get(key, set())
        for tid in sorted(candidates):  # a stable order: the same frames for the same state
            tx = self.transactions[tid]
            if after_ms < tx.time_ms <= through_ms:
                ids.append(tid)
                times.append(tx.time_ms)
                customers.append(tx.customer_id)
                terminals.append(tx.terminal_id)
                amounts.append(tx.amount)
        history = pd.DataFrame({
            "transaction_id": np.arange(len(ids), dtype=np.int64),
            "event_time": pd.to_datetime(np.asarray(times, dtype=np.int64), unit="ms", utc=True),
            "customer_id": customers,
            "terminal_id": terminals,
            "amount": np.asarray(amounts, dtype=np.float64),
        })
        label_rows = [row for row, tid in enumerate(ids) if tid in self.labels]
        label_ids = [ids[row] for row in label_rows]
        labels = pd.DataFrame({
            "transaction_id": np.asarray(label_rows, dtype=np.int64),
            "labeled_at": pd.to_datetime(
                np.asarray([self.labels[t].labeled_at_ms for t in label_ids], dtype=np.int64),
                unit="ms", utc=True),
            "is_fraud": [self.labels[t].is_fraud for t in label_ids],
        })
        return history, labels


def _entity_keys(tx: StoredTransaction) -> list[EntityKey]:
    keys = [("customer_id", tx.customer_id)]
    if tx.terminal_id is not None:
        keys.append(("terminal_id", tx.terminal_id))
    return keys
