"""Re-compute ready decisions with the batch engine; lag classes; per-feature comparison.

One :func:`check_decisions` call takes many decisions whose data is in and
makes **one** :func:`rtml_features.batch.compute_features` call (the call
``rtml train`` makes for training sets) over a spine of their transactions,
so the engine's fixed cost (pandas frames, sorting, ~milliseconds) is paid
once per batch, not per decision.

The spine row of a decision is its transaction as read from ``transactions``
(the decision API publishes every decided transaction there): event time,
customer, terminal, amount. The batch windows ``(t - n, t]`` therefore
include the transaction itself, as in training.

**Lag class** of an entity of a decision. The decision API records in the
decision's ``inputs``, per entity kind ``e`` of the request:

* ``rtml_seen_events_<e>``: how many of the entity's events with time in
  ``(t - H, t]`` the online state held when the request was computed, the
  request itself excluded (``H`` = :meth:`FeatureSet.horizon`, the entity's
  longest window plus its label delay);
* ``rtml_seen_labels_<e>``: how many of those events had a non-zero first
  label known by ``t`` in that state.

The monitor computes both counts from its complete history — with the same
batch call, as a COUNT and a label SUM over ``(t - H, t]`` (label delay 0:
labels known by ``t``), minus the request's own transaction — and compares:

* ``current``: both equal — the API saw everything the batch engine sees, so
  any difference is a real inconsistency of the online computation;
* ``behind``: the API held fewer (neither more): the request raced the
  feature pipeline (the transaction or label was still in flight). A
  difference here is lag, not a wrong formula;
* ``unexplained``: the API held more of either: something other than lag
  (duplicates, a state from another stream, a monitor gap);
* ``unknown``: the markers are absent (an API version that does not record
  them) or not numbers.

Row features depend on no state; they are reported under the decision's
worst class (``unexplained`` > ``unknown`` > ``behind`` > ``current``) among
its checked entities, so a "current" row-feature mismatch is always real too.

**Comparison**: a feature is a mismatch when ``|served - batch| > tolerance``
(a NaN or infinite served value is a mismatch with difference ``inf``). A
feature absent from ``inputs`` or not a number (a degraded decision keeps
only row features) is not compared and counted as ``unserved``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

import numpy as np
import pandas as pd

from rtml_common.handbook import TRANSACTION_SCHEMA
from rtml_consistency_monitor.history import History, StoredTransaction
from rtml_consistency_monitor.sampling import EntitySampler
from rtml_features.batch import compute_features
from rtml_features.definitions import (
    Agg,
    Entity,
    Feature,
    FeatureSet,
    UnsupportedDefinition,
    WindowAggregate,
    entity_of,
)
from rtml_features.request_vector import SEEN_EVENTS_MARKER, SEEN_LABELS_MARKER, log_spec


class Lag(StrEnum):
    """How the online state a decision was computed from compares with the full history."""

    CURRENT = "current"
    BEHIND = "behind"
    UNEXPLAINED = "unexplained"
    UNKNOWN = "unknown"


#: Worst first: a decision's row features take the worst class of its entities.
_SEVERITY = {Lag.UNEXPLAINED: 3, Lag.UNKNOWN: 2, Lag.BEHIND: 1, Lag.CURRENT: 0}


def worst(classes: Sequence[Lag]) -> Lag:
    return max(classes, key=_SEVERITY.__getitem__)


def events_marker(entity: Entity) -> str:
    return SEEN_EVENTS_MARKER + entity.name


def labels_marker(entity: Entity) -> str:
    return SEEN_LABELS_MARKER + entity.name


def classify(served_events: object, served_labels: object, events: int, labels: int) -> Lag:
    """The lag class from the API's markers and the monitor's counts (see module doc)."""
    served = []
    for value in (served_events, served_labels):
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            return Lag.UNKNOWN
        served.append(round(value))
    if served == [events, labels]:
        return Lag.CURRENT
    if served[0] <= events and served[1] <= labels:
        return Lag.BEHIND
    return Lag.UNEXPLAINED


def difference(served: float, batch: float) -> float:
    """``|served - batch|``; ``inf`` when the served value is not finite."""
    if not math.isfinite(served):
        return math.inf
    return abs(served - batch)


@dataclass(frozen=True)
class PendingDecision:
    """What the monitor keeps of a decision until it is checked."""

    transaction_id: str
    event_ms: int
    inputs: Mapping[str, float | str | None]


@dataclass
class FeatureResult:
    feature: str
    lag: Lag
    served: float
    batch: float
    diff: float
    mismatch: bool


@dataclass
class CheckReport:
    """Everything one batch of checks found (the metrics and tests read it)."""

    results: list[FeatureResult] = field(default_factory=list)
    #: (entity kind, lag class) -> entities of decisions classified.
    entity_lags: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: decision outcome -> count: checked, incomplete, no_transaction.
    outcomes: Counter[str] = field(default_factory=Counter)
    #: feature -> values not compared (absent from inputs or not a number).
    unserved: Counter[str] = field(default_factory=Counter)
    #: transaction id -> (entity kind -> lag class), for logs and tests.
    lags: dict[str, dict[str, Lag]] = field(default_factory=dict)

    def mismatches(self) -> list[FeatureResult]:
        return [r for r in self.results if r.mismatch]


def unchecked_reason(feature_set: FeatureSet) -> str | None:
    """Why the monitor cannot check ``feature_set``'s decisions, or None when it can.

    Its batch re-computation and lag markers handle the first definitions over the
    handbook's transactions (it decodes them as :class:`~rtml_common.events.Transaction`);
    any other set (e.g. the payments example) is reported as not checked, and the monitor
    stays up doing nothing rather than failing the platform it watches.
    """
    if feature_set.schema != TRANSACTION_SCHEMA:
        return (f"its events follow schema {feature_set.schema.name!r}, and the monitor "
                "reads the handbook's transactions only")
    try:
        feature_set.require_classic("the consistency monitor")
    except UnsupportedDefinition as exc:
        return str(exc)
    return None


class Checker:
    """Re-computes decisions for one feature set (plus the lag-marker aggregates)."""

    def __init__(self, feature_set: FeatureSet, tolerance: float) -> None:
        feature_set.require_classic("the consistency monitor")
        self.feature_set = feature_set
        self.tolerance = tolerance
        self.entities = feature_set.entities
        self.horizon_ms = {e.name: _ms(feature_set.horizon(e)) for e in self.entities}
        self.max_horizon_ms = max(self.horizon_ms.values(), default=0)
        self._markers: dict[str, tuple[str, str]] = {}
        extra: list[Feature] = []
        for entity in self.entities:
            horizon = feature_set.horizon(entity)
            count = WindowAggregate(f"zz_consistency_events_{entity.name}", entity, Agg.COUNT,
                                    horizon)
            frauds = WindowAggregate(f"zz_consistency_labels_{entity.name}", entity, Agg.SUM,
                                     horizon, field="is_fraud", label_delay=timedelta(0))
            extra += [count, frauds]
            self._markers[entity.name] = (count.name, frauds.name)
        #: Entities whose online logs keep labels; the others record 0 labels seen (the API
        #: has no label log for them), so 0 is what they are compared with.
        self._labelled = {e.name for e in self.entities
                          if log_spec(feature_set, e).label_fields}
        #: The feature set with the marker aggregates appended: one engine call for both.
        self.engine_set = FeatureSet(feature_set.name, [*feature_set.features, *extra],
                                     schema=feature_set.schema)
        self._features_of: dict[str | None, list[str]] = {}
        for feature in feature_set.features:
            owner = entity_of(feature)
            self._features_of.setdefault(owner.name if owner else None, []).append(feature.name)

    def complete(self, history: History, entity: str, event_ms: int) -> bool:
        """Whether the history holds everything the entity's windows at ``event_ms`` read."""
        return event_ms - self.horizon_ms[entity] >= history.complete_after

    def check(self, decisions: Sequence[PendingDecision], history: History,
              sampler: EntitySampler) -> CheckReport:
        """Check ``decisions`` (all ready): each for its entities that ``sampler`` watches."""
        report = CheckReport()
        rows: list[tuple[PendingDecision, StoredTransaction, list[Entity]]] = []
        for decision in decisions:
            tx = history.transactions.get(decision.transaction_id)
            if tx is None:
                report.outcomes["no_transaction"] += 1
                continue
            watched = [e for e in self.entities if sampler.sampled(e.name, _entity_id(tx, e))]
            complete = [e for e in watched if self.complete(history, e.name, tx.time_ms)]
            if not complete:
                report.outcomes["incomplete"] += 1
                continue
            rows.append((decision, tx, complete))
        if not rows:
            return report
        times = [tx.time_ms for _, tx, _ in rows]
        # Only the checked entities' histories: an unchecked entity's values are not compared.
        keys = {(e.keys[0], entity_id) for _, tx, entities in rows for e in entities
                if (entity_id := _entity_id(tx, e)) is not None}
        frame_history, frame_labels = history.frames(min(times) - self.max_horizon_ms - 1,
                                                     max(times), keys)
        spine = pd.DataFrame({
            "transaction_id": [d.transaction_id for d, _, _ in rows],
            "event_time": pd.to_datetime(np.asarray(times, dtype=np.int64), unit="ms",
                                         utc=True),
            "customer_id": [tx.customer_id for _, tx, _ in rows],
            "terminal_id": [tx.terminal_id for _, tx, _ in rows],
            "amount": np.asarray([tx.amount for _, tx, _ in rows], dtype=np.float64),
        })
        computed = compute_features(self.engine_set, spine, frame_history, frame_labels)
        columns = {name: computed[name].to_numpy(dtype=np.float64)
                   for name in self.engine_set.names}
        for i, (decision, tx, entities) in enumerate(rows):
            self._compare(i, decision, tx, entities, columns, history, report)
            report.outcomes["checked"] += 1
        return report

    def _compare(self, i: int, decision: PendingDecision, tx: StoredTransaction,
                 entities: list[Entity], columns: Mapping[str, np.ndarray],
                 history: History, report: CheckReport) -> None:
        inputs = decision.inputs
        own_label = 1 if history.label_known(decision.transaction_id, tx.time_ms) else 0
        lags: dict[str, Lag] = {}
        for entity in entities:
            count_name, labels_name = self._markers[entity.name]
            events = round(float(columns[count_name][i])) - 1  # the request itself excluded
            labels = (round(float(columns[labels_name][i])) - own_label
                      if entity.name in self._labelled else 0)
            lag = classify(inputs.get(events_marker(entity)), inputs.get(labels_marker(entity)),
                           events, labels)
            lags[entity.name] = lag
            report.entity_lags[(entity.name, lag.value)] += 1
        report.lags[decision.transaction_id] = lags
        row_lag = worst(list(lags.values()))
        groups: list[tuple[list[str], Lag]] = [(self._features_of.get(None, []), row_lag)]
        groups += [(self._features_of.get(e.name, []), lags[e.name]) for e in entities]
        for names, lag in groups:
            for name in names:
                served = inputs.get(name)
                if isinstance(served, bool) or not isinstance(served, int | float):
                    report.unserved[name] += 1
                    continue
                batch = float(columns[name][i])
                diff = difference(float(served), batch)
                report.results.append(FeatureResult(name, lag, float(served), batch, diff,
                                                    diff > self.tolerance))


def _entity_id(tx: StoredTransaction, entity: Entity) -> str | None:
    return tx.customer_id if entity.keys[0] == "customer_id" else tx.terminal_id


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


