"""The consumer handler: history in, pending decisions held, ready ones checked in batches.

:meth:`ConsistencyMonitor.handle` is the
:class:`~rtml_common.kafka.consumer.ConsumerLoop` handler for
``transactions``, ``labels`` and ``decisions``. Per batch it

1. files the transactions and labels of sampled entities into the
   :class:`~rtml_consistency_monitor.history.History` and moves both topics'
   watermarks (every record moves its partition's watermark, sampled or not);
2. keeps each decision of a sampled entity as pending (deduplicated by
   transaction id; at most ``MAX_PENDING``, beyond which it is dropped and
   counted);
3. checks every pending decision whose time ``t`` both watermarks have
   passed (strictly: more events stamped exactly ``t`` may follow one) — all
   transactions up to ``t`` and all labels known by ``t`` are in — in
   batches of ``CHECK_BATCH_SIZE`` (one batch-engine call each);
4. evicts history no decision still to come can need (behind the slower of
   the decisions' and the transactions' watermarks, minus the horizon and
   ``DECISION_LATENESS_S``).

Records that are not valid events never reach it: the loop dead-letters them
to ``<topic>.dlq`` with the validation error. The state is in memory: after a
restart the history is incomplete until a horizon has passed (decisions are
counted ``incomplete`` meanwhile) and the decisions pending at the stop are
lost (they were committed); the monitor measures a sample, so this costs
coverage, never a wrong number.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from rtml_common.events import Decision, Label, Transaction
from rtml_common.kafka.consumer import Record
from rtml_common.topics import spec_for_event
from rtml_consistency_monitor.check import (
    Checker,
    CheckReport,
    PendingDecision,
    events_marker,
    labels_marker,
)
from rtml_consistency_monitor.config import Settings
from rtml_consistency_monitor.history import History, StoredLabel, StoredTransaction
from rtml_consistency_monitor.metrics import ConsistencyMetrics
from rtml_consistency_monitor.sampling import EntitySampler
from rtml_consistency_monitor.watermark import Partition, TopicWatermark
from rtml_features.baseline import get_feature_set

logger = logging.getLogger(__name__)

TRANSACTIONS_TOPIC = spec_for_event(Transaction).name
LABELS_TOPIC = spec_for_event(Label).name
DECISIONS_TOPIC = spec_for_event(Decision).name


def epoch_ms(value: Any) -> int:
    return int(value.timestamp() * 1000)


class ConsistencyMonitor:
    """State of the monitor; see the module docstring for what one batch does."""

    def __init__(self, settings: Settings, metrics: ConsistencyMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.feature_set = get_feature_set(settings.feature_set)
        self.checker = Checker(self.feature_set, settings.tolerance)
        self.sampler = EntitySampler(settings.sample_rate, settings.sample_key)
        lateness_ms = settings.allowed_lateness_s * 1000
        self.history = History(lateness_ms)
        self.transactions = TopicWatermark(TRANSACTIONS_TOPIC, lateness_ms,
                                           settings.idle_partition_s, clock)
        self.labels = TopicWatermark(LABELS_TOPIC, lateness_ms, settings.idle_partition_s, clock)
        #: How far the decisions have been read: history behind it (minus the horizon
        #: and DECISION_LATENESS_S) can no longer be needed. Lateness applied in evict().
        self.decisions = TopicWatermark(DECISIONS_TOPIC, 0, settings.idle_partition_s, clock)
        self.metrics = metrics or ConsistencyMetrics(
            self.feature_set.names, settings.max_diff_window_s, clock,
            entities=[e.name for e in self.feature_set.entities])
        self.wall_clock = wall_clock
        self.clock = clock
        self._last_check = -float("inf")
        self._compared_inputs = frozenset(self.feature_set.names) | {
            name for e in self.feature_set.entities
            for name in (events_marker(e), labels_marker(e))}
        self._pending: dict[str, PendingDecision] = {}
        self._queue: list[tuple[int, str]] = []
        #: Transaction ids checked lately (as many as MAX_PENDING): a decision the topic
        #: redelivers (at-least-once) after its check is a duplicate, not checked twice.
        self._checked: dict[str, None] = {}
        #: Evict in steps of 1 % of the longest horizon: a full scan per batch would cost
        #: O(history) each time for nothing.
        self._evict_step_ms = max(self.checker.max_horizon_ms // 100, 60_000)
        #: Counts over the monitor's life (for the last log line and tests).
        self.total = Totals()
        self.outcomes: dict[str, int] = {}
        #: (topic, outcome) -> transactions / labels of the batch being handled.
        self._events: Counter[tuple[str, str]] = Counter()

    # -- wiring --------------------------------------------------------------

    def set_assigned(self, assigned: Callable[[], set[Partition]]) -> None:
        """Tell the watermarks which partitions the consumer owns."""
        self.transactions.assigned = assigned
        self.labels.assigned = assigned
        self.decisions.assigned = assigned

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- handling ------------------------------------------------------------

    def handle(self, records: list[Record[Any]]) -> None:
        """One consumed batch: history first, then decisions, then whatever became ready."""
        decisions: list[Record[Any]] = []
        self._events.clear()  # a retried batch counts its records once
        ahead_ms = int(self.wall_clock() * 1000) + self.settings.max_clock_skew_s * 1000
        for record in records:
            if record.topic == TRANSACTIONS_TOPIC:
                self._transaction(record, ahead_ms)
            elif record.topic == LABELS_TOPIC:
                self._label(record, ahead_ms)
            elif record.topic == DECISIONS_TOPIC:
                decisions.append(record)
        for record in decisions:
            self.decisions.observe(record.partition, epoch_ms(record.value.event_time))
            self._decision(record.value)
        for (topic, outcome), n in self._events.items():  # one metric call per batch
            self.metrics.events.add(n, {"topic": topic, "outcome": outcome})
        self._events.clear()
        self.check_ready()

    def _count(self, outcome: str, n: int = 1) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n
        self.metrics.decision(outcome, n)

    def _watched(self, customer_id: str | None, terminal_id: str | None) -> bool:
        for entity in self.checker.entities:
            entity_id = customer_id if entity.key == "customer_id" else terminal_id
            if self.sampler.sampled(entity.name, entity_id):
                return True
        return False

    def _transaction(self, record: Record[Any], ahead_ms: int) -> None:
        tx: Transaction = record.value
        event_ms = epoch_ms(tx.event_time)
        if event_ms > ahead_ms:
            self.transactions.delivered(record.partition)
            self._events[(TRANSACTIONS_TOPIC, "ahead_of_wall_clock")] += 1
            return
        self.transactions.observe(record.partition, event_ms)
        self.history.transaction_start.observe(record.partition, record.offset, event_ms)
        if not self._watched(tx.customer_id, tx.terminal_id):
            self._events[(TRANSACTIONS_TOPIC, "not_sampled")] += 1
            return
        self.history.add_transaction(tx.transaction_id, StoredTransaction(
            event_ms, tx.customer_id, tx.terminal_id, float(tx.amount)))
        self._events[(TRANSACTIONS_TOPIC, "kept")] += 1

    def _label(self, record: Record[Any], ahead_ms: int) -> None:
        label: Label = record.value
        labeled_ms = epoch_ms(label.labeled_at)
        if labeled_ms > ahead_ms:
            self.labels.delivered(record.partition)
            self._events[(LABELS_TOPIC, "ahead_of_wall_clock")] += 1
            return
        self.labels.observe(record.partition, labeled_ms)
        self.history.label_start.observe(record.partition, record.offset, labeled_ms)
        if not self._watched(label.customer_id, label.terminal_id):
            self._events[(LABELS_TOPIC, "not_sampled")] += 1
            return
        self.history.add_label(label.transaction_id, StoredLabel(
            labeled_ms, label.is_fraud, epoch_ms(label.transaction_time)))
        self._events[(LABELS_TOPIC, "kept")] += 1

    def _decision(self, decision: Decision) -> None:
        terminal = decision.inputs.get("terminal_id")
        if not self._watched(decision.customer_id, terminal if isinstance(terminal, str)
                             else None):
            self._count("not_sampled")
            return
        if decision.transaction_id in self._pending or decision.transaction_id in self._checked:
            self._count("duplicate")
            return
        if len(self._pending) >= self.settings.max_pending:
            self._count("dropped")
            return
        # Only what a check reads (served features, markers): memory per pending decision
        # stays small whatever else the API records (score, request fields, rule inputs).
        kept = {k: v for k, v in decision.inputs.items() if k in self._compared_inputs}
        pending = PendingDecision(decision.transaction_id, epoch_ms(decision.event_time), kept)
        self._pending[pending.transaction_id] = pending
        heapq.heappush(self._queue, (pending.event_ms, pending.transaction_id))
        self._count("pending")

    # -- checking ------------------------------------------------------------

    def eviction_watermark(self) -> int | None:
        """Event time that every decision still to come is at or after, give or take
        ``DECISION_LATENESS_S`` (None: unknown yet, evict nothing).

        The slower of the decisions' and the transactions' watermarks: in a
        catch-up the topics are read at different speeds, and history evicted
        by the transactions alone would be missing for decisions read later.
        While the decisions topic is silent (idle, nothing read) it holds nothing back.
        """
        transactions = self.transactions.value()
        if transactions is None:
            return None
        decisions = self.decisions.value()
        if decisions is None:
            if self.decisions.newest or self.decisions.active():
                return None
            return transactions
        return min(transactions, decisions)

    def _evict(self) -> None:
        """Drop history that no pending decision, nor one still to come, can need."""
        watermark = self.eviction_watermark()
        if watermark is None:
            return
        oldest = watermark - self.settings.decision_lateness_s * 1000
        if self._queue:
            oldest = min(oldest, self._queue[0][0])
        cutoff = oldest - self.checker.max_horizon_ms - 1
        if cutoff - self.history.evicted_through >= self._evict_step_ms:
            self.history.evict_through(cutoff)

    def _remember_checked(self, batch: list[PendingDecision]) -> None:
        for decision in batch:
            self._checked[decision.transaction_id] = None
        excess = len(self._checked) - self.settings.max_pending
        for transaction_id in list(islice(self._checked, max(excess, 0))):
            del self._checked[transaction_id]  # oldest first: dicts keep insertion order

    def ready_through(self) -> int | None:
        """Decisions *before* this event time have all their data in (None: none yet).

        Strictly before: a partition whose newest event is at ``t`` may still
        deliver another event stamped ``t`` (simultaneous events count in a
        window ending at ``t``), and a label known at exactly ``t`` counts too.
        """
        transactions = self.transactions.value()
        if transactions is None:
            return None
        labels = self.labels.value()
        if labels is None:
            if self.labels.newest or self.labels.active():
                return None
            # No label ever arrived and every labels partition is idle: nothing to wait for.
            return transactions
        return min(transactions, labels)

    def check_ready(self) -> CheckReport:
        """Check every ready pending decision (in batches) if due; evict old history.

        Due: ``CHECK_INTERVAL_S`` has passed since the last check, or
        ``CHECK_BATCH_SIZE`` decisions are pending.
        """
        report = CheckReport()
        through = self.ready_through()
        watermark = self.transactions.value()
        if watermark is not None:
            self.metrics.watermark.set(watermark / 1000, {"topic": TRANSACTIONS_TOPIC})
        labels = self.labels.value()
        if labels is not None:
            self.metrics.watermark.set(labels / 1000, {"topic": LABELS_TOPIC})
        decisions = self.decisions.value()
        if decisions is not None:
            self.metrics.watermark.set(decisions / 1000, {"topic": DECISIONS_TOPIC})
        due = (self.clock() - self._last_check >= self.settings.check_interval_s
               or len(self._pending) >= self.settings.check_batch_size)
        if through is not None and due and self._queue and self._queue[0][0] < through:
            self._last_check = self.clock()
            while self._queue and self._queue[0][0] < through:
                batch: list[PendingDecision] = []
                while (self._queue and self._queue[0][0] < through
                       and len(batch) < self.settings.check_batch_size):
                    _, transaction_id = heapq.heappop(self._queue)
                    batch.append(self._pending.pop(transaction_id))
                self._remember_checked(batch)
                try:
                    found = self.checker.check(batch, self.history, self.sampler)
                except Exception:
                    # A failing re-computation is the monitor's own fault, not the fault of
                    # the records being consumed: raising would make the loop retry and then
                    # dead-letter them. Count the decisions as failed and carry on.
                    logger.exception("re-computing %d decisions failed", len(batch))
                    self._count("failed", len(batch))
                    continue
                self.metrics.record(found)
                for outcome, n in found.outcomes.items():
                    self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n
                _merge(report, found)
                self.total.add(found)
                mismatches = found.mismatches()
                logger.info("checked %d decisions: %d feature values, %d mismatches",
                            found.outcomes["checked"], len(found.results), len(mismatches))
        self._evict()
        self.metrics.pending.set(len(self._pending))
        self.metrics.refresh()
        return report


@dataclass
class Totals:
    """Counts of every check of the monitor's life (no per-value memory)."""

    checked: Counter[tuple[str, str]] = field(default_factory=Counter)
    mismatches: Counter[tuple[str, str]] = field(default_factory=Counter)
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    entity_lags: Counter[tuple[str, str]] = field(default_factory=Counter)
    unserved: Counter[str] = field(default_factory=Counter)

    def add(self, report: CheckReport) -> None:
        for result in report.results:
            key = (result.feature, result.lag.value)
            self.checked[key] += 1
            if result.mismatch:
                self.mismatches[key] += 1
            if result.diff > self.max_abs_diff.get(result.feature, -1.0):
                self.max_abs_diff[result.feature] = result.diff
        self.entity_lags.update(report.entity_lags)
        self.unserved.update(report.unserved)


def _merge(into: CheckReport, found: CheckReport) -> None:
    into.results.extend(found.results)
    into.entity_lags.update(found.entity_lags)
    into.outcomes.update(found.outcomes)
    into.unserved.update(found.unserved)
    into.lags.update(found.lags)
