"""The consistency monitor's Prometheus metrics (OpenTelemetry instruments; no-ops until started).

Names as exported (counters get ``_total``; the histogram ``_bucket``,
``_sum``, ``_count``):

* ``rtml_consistency_checked_total{feature, lag}`` — served values compared.
* ``rtml_consistency_mismatches_total{feature, lag}`` — of those, ``|served -
  batch| > tolerance``.
* ``rtml_consistency_abs_diff{feature}`` — histogram of ``|served - batch|``
  (finite differences; a non-finite served value is a mismatch only).
* ``rtml_consistency_max_abs_diff{feature}`` — largest difference among the
  checks of the last ``MAX_DIFF_WINDOW_S`` seconds (wall clock).
* ``rtml_consistency_decisions_total{outcome}`` — decisions by fate:
  ``not_sampled``, ``pending`` (kept to check), ``duplicate``, ``dropped``
  (pending cap), ``checked``, ``incomplete``, ``no_transaction``, ``failed``
  (the re-computation raised: a monitor bug, logged with its traceback).
* ``rtml_consistency_decisions_pending`` — decisions waiting for their data.
* ``rtml_consistency_lag_total{entity, lag}`` — lag class per checked entity.
* ``rtml_consistency_unserved_total{feature}`` — features of a checked
  decision absent from its inputs (degraded answers), not compared.
* ``rtml_consistency_events_total{topic, outcome}`` — transactions and labels:
  ``kept`` (a sampled entity's), ``not_sampled``, ``ahead_of_wall_clock``.
* ``rtml_consistency_watermark_seconds{topic}`` — each topic's watermark (epoch s).
* ``rtml_consistency_feature_set_checked{feature_set}`` — 1 checked, 0 a served set
  the monitor cannot re-compute (it stays up, checking nothing).
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable

from opentelemetry import metrics

from rtml_consistency_monitor.check import CheckReport, Lag

#: |served - batch| buckets: exact, float noise, the 1e-9 bar, then decades of real error.
ABS_DIFF_BUCKETS: tuple[float, ...] = (
    0.0, 1e-12, 1e-9, 1e-6, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0,
)

DECISION_OUTCOMES = ("not_sampled", "pending", "duplicate", "dropped", "checked",
                     "incomplete", "no_transaction", "failed")


class RollingMax:
    """Per key, the largest value recorded in the last ``window_s`` seconds (wall clock)."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self._entries: dict[str, deque[tuple[float, float]]] = {}

    def add(self, key: str, value: float) -> None:
        entries = self._entries.setdefault(key, deque())
        now = self.clock()
        # Entries smaller than the new one can never be the maximum again: keep a
        # decreasing deque, so memory stays small however many checks run.
        while entries and entries[-1][1] <= value:
            entries.pop()
        entries.append((now, value))

    def value(self, key: str) -> float:
        """0 when nothing was recorded in the window."""
        entries = self._entries.get(key)
        if not entries:
            return 0.0
        horizon = self.clock() - self.window_s
        while entries and entries[0][0] < horizon:
            entries.popleft()
        return entries[0][1] if entries else 0.0

    def tracked(self) -> Iterable[str]:
        return list(self._entries)


class ConsistencyMetrics:
    """The instruments, created once per monitor."""

    def __init__(self, features: Iterable[str], max_diff_window_s: float,
                 clock: Callable[[], float] = time.monotonic,
                 meter: metrics.Meter | None = None,
                 entities: Iterable[str] = ()) -> None:
        meter = meter or metrics.get_meter("rtml.consistency_monitor")
        self.features = list(features)
        self.checked = meter.create_counter(
            "rtml_consistency_checked", description="Served feature values compared with batch")
        self.mismatches = meter.create_counter(
            "rtml_consistency_mismatches",
            description="Served feature values differing from batch by more than the tolerance")
        self.abs_diff = meter.create_histogram(
            "rtml_consistency_abs_diff", description="|served - batch| per feature",
            explicit_bucket_boundaries_advisory=list(ABS_DIFF_BUCKETS))
        self.max_abs_diff = meter.create_gauge(
            "rtml_consistency_max_abs_diff",
            description="Largest |served - batch| per feature in the rolling window")
        self.decisions = meter.create_counter(
            "rtml_consistency_decisions", description="Decisions by fate")
        self.pending = meter.create_gauge(
            "rtml_consistency_decisions_pending", description="Decisions waiting for their data")
        self.lag = meter.create_counter(
            "rtml_consistency_lag", description="Lag class per checked entity of a decision")
        self.unserved = meter.create_counter(
            "rtml_consistency_unserved", description="Features absent from a checked decision")
        self.events = meter.create_counter(
            "rtml_consistency_events", description="Transactions and labels by fate")
        self.watermark = meter.create_gauge(
            "rtml_consistency_watermark_seconds",
            description="Event-time watermark of a consumed topic (epoch seconds)")
        self.rolling = RollingMax(max_diff_window_s, clock)
        # Exported from the start: "no mismatch yet" reads 0, not "no data".
        for outcome in DECISION_OUTCOMES:
            self.decisions.add(0, {"outcome": outcome})
        for entity in entities:
            self.lag.add(0, {"entity": entity, "lag": Lag.CURRENT.value})
        for feature in self.features:
            self.checked.add(0, {"feature": feature, "lag": Lag.CURRENT.value})
            self.mismatches.add(0, {"feature": feature, "lag": Lag.CURRENT.value})
            self.max_abs_diff.set(0.0, {"feature": feature})
        self.pending.set(0)

    def decision(self, outcome: str, n: int = 1) -> None:
        if n:
            self.decisions.add(n, {"outcome": outcome})

    def record(self, report: CheckReport) -> None:
        checked: Counter[tuple[str, str]] = Counter()
        mismatched: Counter[tuple[str, str]] = Counter()
        batch_max: dict[str, float] = {}
        for result in report.results:
            key = (result.feature, result.lag.value)
            checked[key] += 1
            if result.mismatch:
                mismatched[key] += 1
            if math.isfinite(result.diff):
                self.abs_diff.record(result.diff, {"feature": result.feature})
            diff = result.diff if math.isfinite(result.diff) else math.inf
            if diff > batch_max.get(result.feature, -1.0):
                batch_max[result.feature] = diff
        for (feature, lag), n in checked.items():
            self.checked.add(n, {"feature": feature, "lag": lag})
        for (feature, lag), n in mismatched.items():
            self.mismatches.add(n, {"feature": feature, "lag": lag})
        for (entity, lag), n in report.entity_lags.items():
            self.lag.add(n, {"entity": entity, "lag": lag})
        for feature, n in report.unserved.items():
            self.unserved.add(n, {"feature": feature})
        for outcome, n in report.outcomes.items():
            self.decision(outcome, n)
        for feature, value in batch_max.items():
            # A gauge must stay finite for Prometheus' sake: inf is shown as float max.
            self.rolling.add(feature, value if math.isfinite(value) else 1.7976931348623157e308)
        self.refresh()

    def refresh(self) -> None:
        """Re-export the rolling maxima (they decay as checks leave the window)."""
        for feature in self.rolling.tracked():
            self.max_abs_diff.set(self.rolling.value(feature), {"feature": feature})


def record_feature_set_checked(feature_set: str, checked: bool,
                               meter: metrics.Meter | None = None) -> None:
    """``rtml_consistency_feature_set_checked{feature_set}``: 1 when the monitor re-computes
    the served set's decisions, 0 when it cannot (a set its engine does not compute yet): a
    monitor that checks nothing says so on its dashboard, not only in a log line."""
    meter = meter or metrics.get_meter("rtml.consistency_monitor")
    gauge = meter.create_gauge(
        "rtml_consistency_feature_set_checked",
        description="1: the served feature set's decisions are re-computed; 0: not checked")
    gauge.set(1 if checked else 0, {"feature_set": feature_set})
