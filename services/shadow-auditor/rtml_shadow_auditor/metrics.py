"""The auditor's Prometheus metrics (OpenTelemetry instruments, no-ops until telemetry starts).

Names as exported (counters get ``_total``):

* gauges per ``{model_version, role}`` after every evaluation:
  ``rtml_shadow_auditor_average_precision``, ``rtml_shadow_auditor_roc_auc``,
  ``rtml_shadow_auditor_card_precision``, ``rtml_shadow_auditor_psi`` (shadows),
  ``rtml_shadow_auditor_agreement`` (shadows), ``rtml_shadow_auditor_latency_p50_ms``,
  ``rtml_shadow_auditor_latency_p99_ms``, ``rtml_shadow_auditor_matured_labels``,
  ``rtml_shadow_auditor_errors`` (shadows, in the recent window);
* ``rtml_shadow_auditor_evaluations_total``;
* ``rtml_shadow_auditor_verdicts_total{decision}`` — one per shadow per evaluation;
* ``rtml_shadow_auditor_promotions_total{outcome}`` — applied, refused, unreachable,
  not_configured, recommended (awaiting approval);
* ``rtml_shadow_auditor_pruned_rows_total`` — score rows dropped by the state bounds.
"""

from __future__ import annotations

from opentelemetry import metrics

from rtml_shadow_auditor.audit import VersionAudit


class AuditorMetrics:
    """The instruments, created once per service."""

    def __init__(self) -> None:
        meter = metrics.get_meter("rtml.shadow_auditor")

        def gauge(name: str, description: str) -> metrics._Gauge:
            return meter.create_gauge(f"rtml_shadow_auditor_{name}", description=description)

        self.ap = gauge("average_precision", "Average precision on matured labels")
        self.auc = gauge("roc_auc", "ROC AUC on matured labels")
        self.cp = gauge("card_precision", "Card precision@k on matured labels")
        self.psi = gauge("psi", "Score PSI against the champion on the same transactions")
        self.agreement = gauge("agreement", "Share of transactions on the champion's side of "
                                            "the decision threshold")
        self.p50 = gauge("latency_p50_ms", "Scoring latency p50 in the recent window (ms)")
        self.p99 = gauge("latency_p99_ms", "Scoring latency p99 in the recent window (ms)")
        self.matured = gauge("matured_labels", "Matured labels the metrics are computed on")
        self.errors = gauge("errors", "Errors in the recent window")
        self.evaluations = meter.create_counter("rtml_shadow_auditor_evaluations",
                                                description="Evaluations run")
        self.verdicts = meter.create_counter("rtml_shadow_auditor_verdicts",
                                             description="Verdicts, by decision")
        self.promotions = meter.create_counter("rtml_shadow_auditor_promotions",
                                               description="Graduations, by outcome")
        self.pruned = meter.create_counter("rtml_shadow_auditor_pruned_rows",
                                           description="Score rows pruned by the state bounds")

    def record(self, audit: VersionAudit) -> None:
        labels = {"model_version": audit.model_version, "role": audit.role}
        figures = {
            self.ap: audit.metrics.ap if audit.metrics else None,
            self.auc: audit.metrics.auc if audit.metrics else None,
            self.cp: audit.metrics.cp_at_k if audit.metrics else None,
            self.psi: audit.psi,
            self.agreement: audit.agreement,
            self.p50: audit.latency_p50_ms,
            self.p99: audit.latency_p99_ms,
            self.matured: audit.matured_labels,
            self.errors: audit.error_count if audit.role == "shadow" else None,
        }
        for instrument, value in figures.items():
            if value is not None:
                instrument.set(float(value), labels)
