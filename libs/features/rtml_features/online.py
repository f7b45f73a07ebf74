"""Incremental window state for streaming engines: one entity's recent events.

The streaming engines (Faust app, plain consumer, Flink map functions) keep
an :class:`EntityState` per entity id and ask it for aggregates at a
transaction's time. It implements exactly the semantics of
:mod:`rtml_features.definitions` (and of :mod:`rtml_features.batch`):

* events are kept sorted by ``(time_ms, transaction id)`` (the id only makes
  the order deterministic), so an event that arrives out of order is inserted
  where it belongs and later computations see it in the right place;
* adding a transaction id already present is a no-op (at-least-once
  redelivery never double counts);
* labels are joined by transaction id, whichever arrives first, and count
  only when ``labeled_at <= t`` of the computing transaction;
* :meth:`EntityState.evict` drops events older than any window can reach.

>>> state = EntityState()
>>> state.add_transaction("t1", 1_000, 10.0)
True
>>> state.add_transaction("t1", 1_000, 10.0)  # redelivered: ignored
False
>>> state.add_transaction("t0", 500, 30.0)    # arrived late, inserted in order
True
>>> state.trailing(1_000, window_ms=1_000)
(2, 40.0)
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

#: "No fraud known": larger than any epoch millisecond.
NEVER = 1 << 62


@dataclass(slots=True)
class EntityState:
    """Recent transactions of one entity, with the labels known for them."""

    #: (time_ms, transaction_id) sorted ascending; parallel to the lists below.
    order: list[tuple[int, str]] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    amounts: list[float] = field(default_factory=list)
    #: When the event became known as fraud (labeled_at), or NEVER.
    fraud_known_at: list[int] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    #: transaction id -> (labeled_at_ms, is_fraud, transaction time_ms), first label wins.
    labels: dict[str, tuple[int, float, int]] = field(default_factory=dict)
    #: Events currently marked fraud; lets window scans skip the label check when 0.
    n_frauds: int = 0

    def add_transaction(self, transaction_id: str, time_ms: int, amount: float) -> bool:
        """Insert an event in order; False if it was already present."""
        if transaction_id in self.ids:
            return False
        label = self.labels.get(transaction_id)  # a label may arrive before its transaction
        known_at = label[0] if label is not None and label[1] else NEVER
        key = (time_ms, transaction_id)
        if not self.order or key > self.order[-1]:
            self.order.append(key)
            self.times.append(time_ms)
            self.amounts.append(amount)
            self.fraud_known_at.append(known_at)
        else:
            position = bisect_right(self.order, key)
            self.order.insert(position, key)
            self.times.insert(position, time_ms)
            self.amounts.insert(position, amount)
            self.fraud_known_at.insert(position, known_at)
        if known_at != NEVER:
            self.n_frauds += 1
        self.ids.add(transaction_id)
        return True

    def add_label(
        self, transaction_id: str, labeled_at_ms: int, is_fraud: bool, transaction_time_ms: int
    ) -> bool:
        """Record a label (it may precede its transaction); False if one was already known."""
        if transaction_id in self.labels:
            return False
        self.labels[transaction_id] = (labeled_at_ms, 1.0 if is_fraud else 0.0,
                                       transaction_time_ms)
        if is_fraud and transaction_id in self.ids:
            position = bisect_right(self.order, (transaction_time_ms, transaction_id)) - 1
            if position >= 0 and self.order[position][1] == transaction_id:
                self.fraud_known_at[position] = labeled_at_ms
                self.n_frauds += 1
        return True

    def trailing(self, time_ms: int, window_ms: int) -> tuple[int, float]:
        """(count, sum of amounts) over ``(t - n, t]``, simultaneous events included."""
        times = self.times
        if not times:
            return 0, 0.0
        upper = len(times) if times[-1] <= time_ms else bisect_right(times, time_ms)
        lower = bisect_right(times, time_ms - window_ms, 0, upper)
        return upper - lower, sum(self.amounts[lower:upper])

    def trailing_bounds(self, time_ms: int, window_ms: int) -> tuple[int, int]:
        """Positions ``[lower, upper)`` of the events in ``(t - n, t]``."""
        upper = bisect_right(self.times, time_ms)
        return bisect_right(self.times, time_ms - window_ms, 0, upper), upper

    def delayed_bounds(self, time_ms: int, window_ms: int, delay_ms: int) -> tuple[int, int]:
        """Positions ``[lower, upper)`` of the events in ``(t - (n + d), t - d]``."""
        upper = bisect_right(self.times, time_ms - delay_ms)
        return bisect_right(self.times, time_ms - delay_ms - window_ms, 0, upper), upper

    def delayed(self, time_ms: int, window_ms: int, delay_ms: int) -> tuple[int, float, float]:
        """(count, sum of amounts, known frauds) over ``(t - (n + d), t - d]``."""
        upper = bisect_right(self.times, time_ms - delay_ms)
        lower = bisect_right(self.times, time_ms - delay_ms - window_ms, 0, upper)
        frauds = 0.0
        if self.n_frauds:
            frauds = float(sum(1 for at in self.fraud_known_at[lower:upper] if at <= time_ms))
        return upper - lower, sum(self.amounts[lower:upper]), frauds

    def evict(self, before_ms: int, purge_labels: bool = False) -> int:
        """Drop events with time < ``before_ms`` and their labels; return events dropped.

        With ``purge_labels`` also drop labels whose transaction (older than
        ``before_ms``) never arrived — a full scan, for periodic sweeps.
        """
        cut = bisect_right(self.times, before_ms - 1)
        if cut:
            for _, transaction_id in self.order[:cut]:
                self.ids.discard(transaction_id)
                self.labels.pop(transaction_id, None)
            self.n_frauds -= sum(1 for at in self.fraud_known_at[:cut] if at != NEVER)
            del self.order[:cut], self.times[:cut], self.amounts[:cut]
            del self.fraud_known_at[:cut]
        if purge_labels and self.labels:
            stale = [tid for tid, (_, _, tx_ms) in self.labels.items() if tx_ms < before_ms]
            for transaction_id in stale:
                del self.labels[transaction_id]
        return cut

    def is_empty(self) -> bool:
        return not self.order and not self.labels

    def __len__(self) -> int:
        return len(self.order)
