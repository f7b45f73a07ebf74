"""The drift monitor's Prometheus metrics (OpenTelemetry instruments; no-ops until started).

Names as exported (counters get ``_total``):

* ``rtml_drift_monitor_psi{subject, window}`` — PSI of the latest evaluated
  window of that kind (``tumbling`` / ``sliding``) for a feature or ``score``.
* ``rtml_drift_monitor_kl{subject, window}``, ``rtml_drift_monitor_js{subject, window}``
  — KL(live || reference) and Jensen-Shannon divergence of the same window.
* ``rtml_drift_monitor_alert_active{subject, window}`` — 1 while an alert is raised.
* ``rtml_drift_monitor_windows_total{window, outcome}`` — windows closed:
  ``evaluated``, ``partial``, ``too_few_events``.
* ``rtml_drift_monitor_alerts_total{subject, window}`` — drift alerts raised.
* ``rtml_drift_monitor_alerts_cleared_total{subject, window}``.
* ``rtml_drift_monitor_retrain_requests_total`` — retrain requests published.
* ``rtml_drift_monitor_events_total{stream, outcome}`` — feature vectors and
  predictions by fate: ``windowed``, ``late`` (window already closed),
  ``revision`` (a re-publication, ignored), ``other_version`` (a score of
  another model version), ``no_reference`` (before a reference was loaded).
* ``rtml_drift_monitor_reference_version{model_name}`` — champion version whose
  reference is loaded.
* ``rtml_drift_monitor_reference_reloads_total{outcome}`` — ``loaded`` / ``failed``.
"""

from __future__ import annotations

from opentelemetry import metrics

from rtml_drift_monitor.detector import Evaluation, Outcome


class DriftMetrics:
    """The instruments, created once per monitor."""

    def __init__(self) -> None:
        meter = metrics.get_meter("rtml.drift_monitor")
        self.psi = meter.create_gauge(
            "rtml_drift_monitor_psi", description="PSI of the latest window, by subject")
        self.kl = meter.create_gauge(
            "rtml_drift_monitor_kl", description="KL(live || reference) of the latest window")
        self.js = meter.create_gauge(
            "rtml_drift_monitor_js", description="Jensen-Shannon divergence of the latest window")
        self.alert_active = meter.create_gauge(
            "rtml_drift_monitor_alert_active", description="1 while a drift alert is raised")
        self.windows = meter.create_counter(
            "rtml_drift_monitor_windows", description="Windows closed, by outcome")
        self.alerts = meter.create_counter(
            "rtml_drift_monitor_alerts", description="Drift alerts raised")
        self.cleared = meter.create_counter(
            "rtml_drift_monitor_alerts_cleared", description="Drift alerts cleared")
        self.retrain_requests = meter.create_counter(
            "rtml_drift_monitor_retrain_requests", description="Retrain requests published")
        self.retrain_requests.add(0)  # exported as 0 until the first request
        self.events = meter.create_counter(
            "rtml_drift_monitor_events", description="Input events by fate")
        self.reference_version = meter.create_gauge(
            "rtml_drift_monitor_reference_version",
            description="Champion version whose reference distributions are loaded")
        self.reloads = meter.create_counter(
            "rtml_drift_monitor_reference_reloads", description="Reference loads, by outcome")

    def record(self, outcome: Outcome) -> None:
        for evaluation in outcome.evaluations:
            self._window(evaluation)
        if outcome.retrain_requests:
            self.retrain_requests.add(len(outcome.retrain_requests))

    def _window(self, evaluation: Evaluation) -> None:
        kind = evaluation.window.kind.value
        self.windows.add(1, {"window": kind, "outcome": evaluation.skip or "evaluated"})
        for subject, measure in evaluation.measures.items():
            labels = {"subject": subject, "window": kind}
            self.psi.set(measure.psi, labels)
            self.kl.set(measure.kl, labels)
            self.js.set(measure.js, labels)
        for alert in evaluation.raised:
            labels = {"subject": alert.subject, "window": kind}
            self.alerts.add(1, labels)
            self.alert_active.set(1, labels)
        for subject in evaluation.cleared:
            labels = {"subject": subject, "window": kind}
            self.cleared.add(1, labels)
            self.alert_active.set(0, labels)
