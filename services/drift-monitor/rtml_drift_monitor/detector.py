"""The drift detector: windows of feature values and scores -> divergences -> alerts.

Pure and synchronous (no broker, no registry, no clock except ``now`` for
``raised_at``): the Kafka service feeds it batches of decoded records, and the
stationary-replay test feeds it a million rows of a simulated data set
directly, so both exercise exactly the same code.

Two streams are windowed separately, each with its own watermark: the
feature vectors (one subject per reference feature) and the champion's scores
(subject ``score``). A closed window that is evaluated gets, per subject with
at least ``min_events`` values, the PSI, KL and JS divergence of its histogram
against the reference counts (:mod:`rtml_monitoring.divergence`, with its
documented smoothing), then the subject's hysteresis is fed its alerting
metric: PSI for numbers, the Jensen-Shannon divergence for a categorical
feature (a category code binned per declared category: PSI's log-ratio
explodes on a category rare on one side, JS stays bounded by ln 2).

An alert is a :class:`~rtml_common.events.DriftAlert` with that metric; alerts
raised by windows that end at the same time lead to at most one
:class:`~rtml_common.events.RetrainRequest` listing them (policy and cooldown
permitting; see :mod:`rtml_drift_monitor.alerts`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from rtml_common.events import DriftAlert, DriftMetric, RetrainRequest, utcnow
from rtml_drift_monitor.alerts import (
    Hysteresis,
    HysteresisRule,
    RetrainPlanner,
    Thresholds,
    Transition,
    alert_id,
    request_id,
)
from rtml_drift_monitor.windows import (
    ClosedWindow,
    Window,
    WindowedHistograms,
    WindowKind,
    WindowSpec,
)
from rtml_monitoring.divergence import js, kl, psi
from rtml_monitoring.reference import SCORE, Distribution, ReferenceDistributions

logger = logging.getLogger(__name__)


def to_datetime(epoch_ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=epoch_ms)


@dataclass(frozen=True)
class Measure:
    """One subject's divergences in one window (in nats; :attr:`metric` is the alerting one)."""

    subject: str
    psi: float
    kl: float
    js: float
    n: int
    #: The threshold that applied, in :attr:`metric` (None: not alerted).
    threshold: float | None
    #: The window's counts in the reference bins (for metrics, tests and audits).
    counts: tuple[int, ...]
    #: The metric alerts compare: PSI, or JS for a categorical subject.
    metric: DriftMetric = DriftMetric.PSI

    @property
    def value(self) -> float:
        """The alerting metric's value."""
        return self.js if self.metric is DriftMetric.JS else self.psi


@dataclass(frozen=True)
class Evaluation:
    """A closed window and what it led to."""

    window: Window
    events: int
    #: Why it was not evaluated (None: evaluated).
    skip: str | None
    measures: dict[str, Measure] = field(default_factory=dict)
    raised: list[DriftAlert] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """What one :meth:`DriftDetector.observe_features` / ``observe_scores`` call produced."""

    evaluations: list[Evaluation] = field(default_factory=list)
    alerts: list[DriftAlert] = field(default_factory=list)
    retrain_requests: list[RetrainRequest] = field(default_factory=list)

    def extend(self, other: Outcome) -> None:
        self.evaluations += other.evaluations
        self.alerts += other.alerts
        self.retrain_requests += other.retrain_requests


class DriftDetector:
    """Drift of one model version's features and scores against its reference distributions."""

    def __init__(self, reference: ReferenceDistributions, model_name: str, model_version: str,
                 spec: WindowSpec, thresholds: Thresholds, rule: HysteresisRule,
                 planner: RetrainPlanner, now: Callable[[], datetime] = utcnow) -> None:
        self.reference = reference
        self.model_name = model_name
        self.model_version = model_version
        self.thresholds = thresholds
        self.rule = rule
        self.planner = planner
        self.now = now
        self.feature_names: tuple[str, ...] = tuple(reference.features)
        self._distributions: dict[str, Distribution] = dict(reference.features)
        self.features = WindowedHistograms(self.feature_names, reference.features, spec)
        self.scores: WindowedHistograms | None = None
        if reference.score is not None:
            self._distributions[SCORE] = reference.score
            self.scores = WindowedHistograms((SCORE,), {SCORE: reference.score}, spec)
        self._states: dict[tuple[WindowKind, str], Hysteresis] = {}

    @property
    def subjects(self) -> tuple[str, ...]:
        return self.feature_names + ((SCORE,) if self.scores is not None else ())

    def active_alerts(self) -> list[tuple[WindowKind, str]]:
        """(window kind, subject) pairs whose alert is raised."""
        return sorted(key for key, state in self._states.items() if state.raised)

    # -- checkpoints ---------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Windows and alert states as plain JSON values (see :mod:`.checkpoint`)."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "features": self.features.snapshot(),
            "scores": self.scores.snapshot() if self.scores is not None else None,
            "alerts": [[str(kind), subject, state.raised, state.over, state.under]
                       for (kind, subject), state in sorted(self._states.items())],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`snapshot` of a detector of the same model version."""
        if (state["model_name"], state["model_version"]) != (self.model_name,
                                                            self.model_version):
            raise ValueError(f"the checkpoint is of {state['model_name']} "
                             f"v{state['model_version']}, not v{self.model_version}")
        if (state["scores"] is None) != (self.scores is None):
            raise ValueError("the checkpoint and the reference disagree on the score")
        self.features.restore(state["features"])
        if self.scores is not None:
            self.scores.restore(state["scores"])
        self._states = {
            (WindowKind(kind), subject): Hysteresis(self.rule, bool(raised), int(over),
                                                    int(under))
            for kind, subject, raised, over, under in state["alerts"]}

    # -- input -------------------------------------------------------------

    def observe_features(self, times_ms: npt.ArrayLike, values: npt.ArrayLike,
                         sources: Hashable | list[Hashable] = None,
                         active: Collection[Hashable] | None = None) -> Outcome:
        """Rows of feature values (columns in :attr:`feature_names` order, NaN = missing).

        ``sources`` / ``active``: see :meth:`WindowedHistograms.observe`.
        """
        closed = self.features.observe(times_ms, values, sources, active)
        return self._evaluate(self.feature_names, closed)

    def observe_scores(self, times_ms: npt.ArrayLike, scores: npt.ArrayLike,
                       sources: Hashable | list[Hashable] = None,
                       active: Collection[Hashable] | None = None) -> Outcome:
        """Champion scores of this model version (ignored if the reference has none)."""
        if self.scores is None:
            return Outcome()
        column = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
        return self._evaluate((SCORE,), self.scores.observe(times_ms, column, sources, active))

    # -- evaluation --------------------------------------------------------

    def _evaluate(self, names: Sequence[str], closed: Sequence[ClosedWindow]) -> Outcome:
        outcome = Outcome()
        by_end: dict[int, list[DriftAlert]] = {}
        for window in closed:
            evaluation = self._measure(names, window)
            outcome.evaluations.append(evaluation)
            if evaluation.raised:
                by_end.setdefault(window.window.end_ms, []).extend(evaluation.raised)
                outcome.alerts += evaluation.raised
        for end_ms, alerts in sorted(by_end.items()):
            request = self._retrain_request(end_ms, alerts)
            if request is not None:
                outcome.retrain_requests.append(request)
        return outcome

    def _measure(self, names: Sequence[str], closed: ClosedWindow) -> Evaluation:
        window = closed.window
        evaluation = Evaluation(window, closed.events, closed.skip.value if closed.skip else None)
        if closed.skip is not None:
            return evaluation
        min_events = self.features.spec.min_events
        for name, counts, n in zip(names, closed.counts, closed.n, strict=True):
            if n < min_events:  # this subject's values are too few (e.g. mostly missing)
                continue
            distribution = self._distributions[name]
            reference = distribution.counts
            threshold = self.thresholds.for_subject(window.kind, name, distribution.categorical)
            measure = Measure(name, psi(reference, counts), kl(reference, counts),
                              js(reference, counts), n, threshold, tuple(int(c) for c in counts),
                              DriftMetric.JS if distribution.categorical else DriftMetric.PSI)
            evaluation.measures[name] = measure
            if threshold is None:
                continue
            state = self._states.setdefault((window.kind, name), Hysteresis(self.rule))
            transition = state.update(measure.value, threshold)
            if transition is Transition.RAISED:
                evaluation.raised.append(self._alert(window, measure, threshold))
            elif transition is Transition.CLEARED:
                evaluation.cleared.append(name)
                logger.info("drift cleared: %s on %s windows (%s %.4f, window ending %s)",
                            name, window.kind.value, measure.metric.name, measure.value,
                            to_datetime(window.end_ms))
        return evaluation

    def _alert(self, window: Window, measure: Measure, threshold: float) -> DriftAlert:
        alert = DriftAlert(
            alert_id=alert_id(self.model_name, self.model_version, window, measure.subject),
            subject=measure.subject, metric=measure.metric, value=measure.value,
            threshold=threshold, window_start=to_datetime(window.start_ms),
            window_end=to_datetime(window.end_ms), model_name=self.model_name,
            model_version=self.model_version, raised_at=self.now())
        logger.warning("drift alert %s: %s %s %.4f > %g on the %s window %s..%s (%s v%s)",
                       alert.alert_id, measure.subject, measure.metric.name, measure.value,
                       threshold,
                       window.kind.value, alert.window_start, alert.window_end,
                       self.model_name, self.model_version)
        return alert

    def _retrain_request(self, end_ms: int, alerts: list[DriftAlert]) -> RetrainRequest | None:
        if not self.planner.due(end_ms):
            return None
        worst = max(alerts, key=lambda a: a.value / a.threshold)
        subjects = sorted({a.subject for a in alerts})
        reason = (f"drift of {', '.join(subjects)} against {self.model_name} "
                  f"v{self.model_version}'s training data (worst: {worst.subject} "
                  f"{worst.metric.name} "
                  f"{worst.value:.3f} > {worst.threshold:g}, window "
                  f"{worst.window_start.isoformat()}..{worst.window_end.isoformat()})")
        end = to_datetime(end_ms)
        return RetrainRequest(
            request_id=request_id(self.model_name, self.model_version, end_ms),
            model_name=self.model_name, reason=reason,
            alert_ids=[a.alert_id for a in alerts],
            data_start=end - timedelta(milliseconds=self.planner.lookback_ms), data_end=end,
            requested_at=self.now())
