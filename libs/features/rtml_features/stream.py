"""Feature vectors one event at a time: the logic every streaming engine runs.

:class:`StreamingFeatureComputer` owns the per-entity :class:`EntityState`
of a feature set and turns each transaction into its feature vector the way
the batch engine computes it over history (the parity tests hold them to
1e-9). Engines (the Faust app, a plain consumer loop, Flink map functions)
only move events in and vectors out; they never compute features themselves.

Out-of-order and late events: the computer tracks the highest event time
seen (the watermark). A transaction older than ``watermark -
allowed_lateness`` is refused with :class:`LateEvent` so the engine can route
it to its late path (its windows may already have been evicted). One within
the lateness is inserted where it belongs, and every already-emitted
transaction whose windows it changes is recomputed and returned as a
*revision* — the same for a label that arrives after transactions that should
have seen it. The last vector emitted for a transaction therefore always
equals the batch engine's point-in-time value.

>>> from datetime import timedelta
>>> from rtml_features.baseline import BASELINE
>>> computer = StreamingFeatureComputer(BASELINE, allowed_lateness=timedelta(minutes=5))
>>> [(tx_id, v["customer_id_nb_tx_1day_window"]) for tx_id, v in
...  computer.on_transaction("2", "c1", "t1", 1_522_584_060_000, 20.0)]
[('2', 1.0)]
>>> [(tx_id, v["customer_id_nb_tx_1day_window"]) for tx_id, v in  # one minute out of order
...  computer.on_transaction("1", "c1", "t1", 1_522_584_000_000, 5.0)]
[('1', 1.0), ('2', 2.0)]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from rtml_features.definitions import (
    Agg,
    FeatureSet,
    Ratio,
    RowFeature,
    RowKind,
    WindowAggregate,
)
from rtml_features.online import EntityState

MS_PER_DAY = 86_400_000


class LateEvent(ValueError):
    """A transaction arrived later than the allowed lateness."""


def row_feature_value(feature: RowFeature, time_ms: int, amount: float) -> float:
    """Scalar twin of the batch engine's vectorized row features."""
    if feature.kind is RowKind.FIELD:
        return float(amount)
    days, in_day = divmod(time_ms, MS_PER_DAY)
    if feature.kind is RowKind.WEEKEND:
        return 1.0 if (days + 3) % 7 >= 5 else 0.0  # 1970-01-01 was a Thursday
    return 1.0 if in_day // 3_600_000 <= feature.night_end_hour else 0.0


@dataclass(frozen=True, slots=True)
class _Emitted:
    """What is needed to recompute an emitted transaction's vector."""

    ids: dict[str, str | None]
    time_ms: int
    amount: float
    vector: dict[str, float]


@dataclass(frozen=True)
class _Scan:
    """One window scan shared by the aggregates with the same (entity, window, delay)."""

    entity: str
    key: str
    window_ms: int
    delay_ms: int
    aggregates: tuple[WindowAggregate, ...]


class StreamingFeatureComputer:
    """Per-entity window state plus the feature set's arithmetic."""

    def __init__(self, feature_set: FeatureSet, allowed_lateness: timedelta = timedelta(0)):
        self.feature_set = feature_set
        self.allowed_lateness_ms = int(allowed_lateness.total_seconds() * 1000)
        self.states: dict[tuple[str, str], EntityState] = {}
        self.watermark_ms: int | None = None
        #: Transactions emitted within the lateness horizon (candidates for revision).
        self.recent: dict[str, _Emitted] = {}
        self.revisions = 0
        self.horizon_ms = {
            entity.name: int(feature_set.horizon(entity).total_seconds() * 1000)
            for entity in feature_set.entities
        }
        grouped: dict[tuple[str, int, int], list[WindowAggregate]] = {}
        keys: dict[str, str] = {}
        for aggregate in feature_set.window_aggregates:
            if aggregate.agg in (Agg.MIN, Agg.MAX):
                raise NotImplementedError("min/max aggregates are not supported by this engine yet")
            scan_key = (aggregate.entity.name, int(aggregate.window.total_seconds() * 1000),
                        int(aggregate.delay.total_seconds() * 1000))
            grouped.setdefault(scan_key, []).append(aggregate)
            keys[aggregate.entity.name] = aggregate.entity.key
        self._scans = [
            _Scan(entity, keys[entity], window_ms, delay_ms, tuple(aggregates))
            for (entity, window_ms, delay_ms), aggregates in grouped.items()
        ]
        self._entity_keys = sorted({(scan.entity, scan.key) for scan in self._scans})
        self._label_entity_keys = sorted(
            {(scan.entity, scan.key) for scan in self._scans if _uses_labels(scan)}
        )
        self._row_features = feature_set.row_features
        self._ratios = [f for f in feature_set.features if isinstance(f, Ratio)]
        self._names = feature_set.names

    def state(self, entity: str, entity_id: str) -> EntityState:
        key = (entity, entity_id)
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = EntityState()
        return state

    def on_transaction(self, transaction_id: str, customer_id: str, terminal_id: str | None,
                       time_ms: int, amount: float) -> list[tuple[str, dict[str, float]]]:
        """Apply a transaction; return its vector first, then any revised earlier vectors.

        A redelivered transaction changes no state and returns its vector again.
        """
        if self.watermark_ms is not None and time_ms < self.watermark_ms - self.allowed_lateness_ms:
            raise LateEvent(
                f"transaction {transaction_id} at {time_ms} is "
                f"{self.watermark_ms - time_ms} ms behind the watermark "
                f"(allowed {self.allowed_lateness_ms} ms)"
            )
        ids = {"customer_id": customer_id, "terminal_id": terminal_id}
        added = False
        for entity, key in self._entity_keys:
            entity_id = ids[key]
            if entity_id is not None:
                added |= self.state(entity, entity_id).add_transaction(
                    transaction_id, time_ms, amount
                )
        out_of_order = self.watermark_ms is not None and time_ms < self.watermark_ms
        if self.watermark_ms is None or time_ms > self.watermark_ms:
            self.watermark_ms = time_ms
        vector = self.vector(transaction_id, ids, time_ms, amount)
        self.recent[transaction_id] = _Emitted(ids, time_ms, amount, vector)
        emitted = [(transaction_id, vector)]
        if added and out_of_order:
            emitted += self._revise(ids, after=(time_ms, transaction_id))
        return emitted

    def on_label(self, transaction_id: str, customer_id: str, terminal_id: str | None,
                 transaction_time_ms: int, labeled_at_ms: int,
                 is_fraud: bool) -> list[tuple[str, dict[str, float]]]:
        """Record a label; return revised vectors of emitted transactions it should reach."""
        ids = {"customer_id": customer_id, "terminal_id": terminal_id}
        added = False
        for entity, key in self._label_entity_keys:
            entity_id = ids[key]
            if entity_id is not None:
                added |= self.state(entity, entity_id).add_label(
                    transaction_id, labeled_at_ms, is_fraud, transaction_time_ms
                )
        if not added or self.watermark_ms is None or labeled_at_ms > self.watermark_ms:
            return []
        return self._revise(ids, after=(labeled_at_ms, ""))

    def _revise(self, ids: dict[str, str | None],
                after: tuple[int, str]) -> list[tuple[str, dict[str, float]]]:
        """Recompute recent vectors sharing an entity with ``ids`` and ordered after ``after``."""
        revised = []
        for other_id, emitted in self.recent.items():
            if (emitted.time_ms, other_id) <= after:
                continue
            if not any(ids[key] is not None and emitted.ids[key] == ids[key]
                       for _, key in self._entity_keys):
                continue
            vector = self.vector(other_id, emitted.ids, emitted.time_ms, emitted.amount)
            if vector != emitted.vector:
                self.recent[other_id] = _Emitted(emitted.ids, emitted.time_ms, emitted.amount,
                                                 vector)
                revised.append((other_id, vector))
        self.revisions += len(revised)
        return revised

    def vector(self, transaction_id: str, ids: dict[str, str | None], time_ms: int,
               amount: float) -> dict[str, float]:
        """The feature vector at (time, id) from the current state (no state change)."""
        values: dict[str, float] = {
            f.name: row_feature_value(f, time_ms, amount) for f in self._row_features
        }
        for scan in self._scans:
            entity_id = ids[scan.key]
            state = self.states.get((scan.entity, entity_id)) if entity_id is not None else None
            if state is None:
                count, total, frauds = 0, 0.0, 0.0
            elif scan.delay_ms == 0:
                count, total = state.trailing(time_ms, transaction_id, scan.window_ms)
                frauds = 0.0
            else:
                count, total, frauds = state.delayed(time_ms, scan.window_ms, scan.delay_ms)
            for aggregate in scan.aggregates:
                values[aggregate.name] = _aggregate_value(aggregate, count, total, frauds)
        for ratio in self._ratios:
            denominator = values[ratio.denominator.name]
            values[ratio.name] = (
                values[ratio.numerator.name] / denominator if denominator else ratio.default
            )
        return {name: values[name] for name in self._names}

    def evict(self) -> int:
        """Drop state no window can reach any more; return events dropped."""
        if self.watermark_ms is None:
            return 0
        oldest_revisable = self.watermark_ms - self.allowed_lateness_ms
        for transaction_id in [t for t, e in self.recent.items() if e.time_ms < oldest_revisable]:
            del self.recent[transaction_id]
        dropped = 0
        for (entity, entity_id), state in list(self.states.items()):
            cutoff = self.watermark_ms - self.allowed_lateness_ms - self.horizon_ms[entity]
            dropped += state.evict(cutoff)
            if state.is_empty():
                del self.states[(entity, entity_id)]
        return dropped


def _uses_labels(scan: _Scan) -> bool:
    return any(a.uses_labels for a in scan.aggregates)


def _aggregate_value(aggregate: WindowAggregate, count: int, total: float, frauds: float) -> float:
    if aggregate.agg is Agg.COUNT:
        return float(count)
    value = frauds if aggregate.uses_labels else total
    if aggregate.agg is Agg.SUM:
        return value
    return value / count if count else 0.0
