"""The PromQL behind every panel of ``rtml top``, one declaration per panel.

Names are as the OpenTelemetry Prometheus exporter writes them: counters get
``_total``, an instrument with unit ``s`` gets ``_seconds`` (histograms then
``_bucket`` / ``_sum`` / ``_count``). The queries follow the Grafana dashboards
in ``deploy/grafana/dashboards`` (their ``$__rate_interval`` is ``$window``
here). Counters are read both as totals since the service started (a quiet
platform still shows what happened) and as rates over the window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Placeholder of the rate window in the PromQL below.
WINDOW = "$window"
#: A Prometheus duration such as ``30s``, ``1m`` or ``1m30s``.
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")

#: Job names of the platform's services as ``rtml up`` has Prometheus scrape them
#: (the supervisor's ``service`` label uses the same names), in display order.
PLATFORM_SERVICES = (
    "feature-pipeline", "scorer", "decision-api", "model-registry", "shadow-auditor",
    "drift-monitor", "retrain-worker", "decision-log-writer", "consistency-monitor",
    "platform-supervisor",
)

#: Jobs that are not platform services (Prometheus scraping itself).
IGNORED_JOBS = ("prometheus",)

#: Decision outcomes always listed in the outcome mix, even at zero.
OUTCOMES = ("approve", "review", "decline")


def check_window(window: str) -> str:
    """``window`` if it is a Prometheus duration, else a ValueError saying what is expected."""
    if not _DURATION.match(window):
        raise ValueError(f"rate window {window!r}: expected a Prometheus duration "
                         "such as 30s, 1m or 5m")
    return window


@dataclass(frozen=True)
class Query:
    """One instant query of a panel; ``key`` is how the view finds its result."""

    key: str
    promql: str

    def expr(self, window: str) -> str:
        """The PromQL with the rate window filled in."""
        return self.promql.replace(WINDOW, window)


@dataclass(frozen=True)
class Panel:
    """A panel: its title, the service(s) whose metrics it shows, and its queries."""

    key: str
    title: str
    source: str
    queries: tuple[Query, ...]

    def query(self, key: str) -> Query:
        for query in self.queries:
            if query.key == key:
                return query
        raise KeyError(f"panel {self.key!r} has no query {key!r}")


def _quantile(q: float, bucket: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({bucket}[{WINDOW}])))"


SERVICES = Panel("services", "Services", "platform supervisor, every service", (
    Query("up", "max by (service) (rtml_platform_service_up)"),
    Query("restarts", "max by (service) (rtml_platform_service_restarts_total)"),
    Query("scraped", 'min by (job) (up{job!~"' + "|".join(IGNORED_JOBS) + '"})'),
    Query("consumed", f"sum by (job) (rate(rtml_events_consumed_total[{WINDOW}]))"),
    Query("requests", f"sum by (job) (rate(rtml_decision_requests_total[{WINDOW}])) or "
                      f"sum by (job) (rate(rtml_model_registry_requests_total[{WINDOW}]))"),
    Query("lag", "max by (job) (rtml_consumer_lag_seconds)"),
    Query("uncommitted",
          "sum by (job) (rtml_consumer_read_offset - rtml_consumer_committed_offset)"),
))

DECISIONS = Panel("decisions", "Decision API", "decision-api", (
    Query("rate", f"sum(rate(rtml_decision_requests_total[{WINDOW}]))"),
    Query("total", "sum(rtml_decision_requests_total)"),
    Query("p50", _quantile(0.5, "rtml_decision_latency_seconds_bucket")),
    Query("p99", _quantile(0.99, "rtml_decision_latency_seconds_bucket")),
    Query("outcomes", "sum by (outcome) (rtml_decision_requests_total)"),
    Query("outcome_rates", f"sum by (outcome) (rate(rtml_decision_requests_total[{WINDOW}]))"),
    Query("degraded", "sum by (reason) (rtml_decision_degraded_total)"),
    # Rules carry one reason code each; the metric is labelled with the rule's name.
    Query("reasons", "topk(5, sum by (reason_code, rule) (rtml_decision_rules_fired_total))"),
))

MODELS = Panel("models", "Models", "scorer, shadow-auditor", (
    Query("scored", "sum by (role, alias, model_version) "
                    f"(rate(rtml_scorer_events_scored_total[{WINDOW}]))"),
    Query("agreement", "max by (role, model_version) (rtml_shadow_auditor_agreement)"),
    Query("auc", "max by (role, model_version) (rtml_shadow_auditor_roc_auc)"),
    Query("ap", "max by (role, model_version) (rtml_shadow_auditor_average_precision)"),
    Query("matured", "max by (role, model_version) (rtml_shadow_auditor_matured_labels)"),
))

FRESHNESS = Panel("freshness", "Feature freshness", "feature-pipeline", (
    Query("p50", _quantile(0.5, "rtml_feature_freshness_seconds_bucket")),
    Query("p99", _quantile(0.99, "rtml_feature_freshness_seconds_bucket")),
    Query("measured", "sum(rtml_feature_freshness_seconds_count)"),
    Query("vectors", f"sum(rate(rtml_feature_vectors_total[{WINDOW}]))"),
    Query("late", "sum(rtml_late_events_total)"),
))

DRIFT = Panel("drift", "Drift (PSI per feature)", "drift-monitor", (
    Query("psi", "max by (subject, window) (rtml_drift_monitor_psi)"),
    Query("alerts", "max by (subject, window) (rtml_drift_monitor_alert_active)"),
    Query("reference", "max(rtml_drift_monitor_reference_version)"),
))

CONSISTENCY = Panel("consistency", "Online/offline consistency", "consistency-monitor", (
    Query("checked", 'sum by (feature) (rtml_consistency_checked_total{lag="current"})'),
    Query("mismatches", 'sum by (feature) (rtml_consistency_mismatches_total{lag="current"})'),
    Query("checked_all", "sum by (feature) (rtml_consistency_checked_total)"),
    Query("mismatches_all", "sum by (feature) (rtml_consistency_mismatches_total)"),
    Query("max_diff", "max by (feature) (rtml_consistency_max_abs_diff)"),
    Query("pending", "sum(rtml_consistency_decisions_pending)"),
))

#: Every panel, in display order.
PANELS: tuple[Panel, ...] = (SERVICES, DECISIONS, MODELS, FRESHNESS, DRIFT, CONSISTENCY)
