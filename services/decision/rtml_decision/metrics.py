"""The service's metrics, through the OpenTelemetry API like every rtml service.

A no-op until :func:`rtml_common.telemetry.init_telemetry` runs (``__main__``
does). The Prometheus exporter adds ``_total`` to counters and the unit to
histograms, so the series are:

* ``rtml_decision_requests_total{outcome,arm,degraded}`` — decisions returned
* ``rtml_decision_http_requests_total{route,method,status}`` — every HTTP request
* ``rtml_decision_latency_seconds`` (histogram) — decision latency
* ``rtml_decision_degraded_total{reason}`` — answered by the fallback rules
* ``rtml_decision_replays_total`` — idempotent retries answered from the record
* ``rtml_decision_rules_fired_total{rule,reason_code}`` — rules that fired, with the
  reason code analysts see (``rtml top`` ranks reason codes by it)
* ``rtml_decision_undelivered_total`` — decisions/transactions Kafka did not accept
* ``rtml_decision_log_written_total`` / ``rtml_decision_log_failures_total`` —
  the decision-log writer's Cassandra writes and failed attempts
* ``rtml_decision_log_pending`` (gauge) — decisions read but not yet in Cassandra
* ``rtml_decision_rules_revision`` (gauge) — the shared rule-set revision this process
  decides with (0: the configured file); every worker and replica should show the same
* ``rtml_decision_rules_sync_failures_total{reason}`` — re-reads of the shared rule set
  that failed: ``invalid`` (a stored set refused, the rules held stay) or
  ``redis_unavailable``
"""

from __future__ import annotations

from opentelemetry import metrics

from rtml_common.events import FiredRule
from rtml_common.metric_buckets import DURATION_SECONDS


class DecisionMetrics:
    """The instruments, created once per process."""

    def __init__(self) -> None:
        meter = metrics.get_meter("rtml.decision")
        self._requests = meter.create_counter(
            "rtml_decision_requests", description="Decisions, by outcome, arm and degraded")
        self._http = meter.create_counter(
            "rtml_decision_http_requests", description="HTTP requests, by route and status")
        self._latency = meter.create_histogram(
            "rtml_decision_latency", unit="s", description="Decision latency",
            explicit_bucket_boundaries_advisory=list(DURATION_SECONDS))
        self._degraded = meter.create_counter(
            "rtml_decision_degraded", description="Decisions answered by the fallback rules")
        self._replays = meter.create_counter(
            "rtml_decision_replays", description="Retries answered from the stored decision")
        self._fired = meter.create_counter(
            "rtml_decision_rules_fired", description="Rules that fired, by rule and reason code")
        self._undelivered = meter.create_counter(
            "rtml_decision_undelivered", description="Records Kafka did not accept")
        self._log_written = meter.create_counter(
            "rtml_decision_log_written", description="Decisions written to the decision log")
        self._log_failures = meter.create_counter(
            "rtml_decision_log_failures", description="Failed decision-log write attempts")
        self._log_pending = meter.create_up_down_counter(
            "rtml_decision_log_pending", description="Decisions waiting for the decision log")
        self._rules_revision = meter.create_gauge(
            "rtml_decision_rules_revision",
            description="Shared rule-set revision this process decides with (0: the file)")
        self._rules_sync_failures = meter.create_counter(
            "rtml_decision_rules_sync_failures",
            description="Failed re-reads of the shared rule set, by reason")
        # Rare events, exported as 0 from the start so "none" is not "no data".
        for counter in (self._undelivered, self._log_failures, self._replays):
            counter.add(0)
        for reason in ("invalid", "redis_unavailable"):
            self._rules_sync_failures.add(0, {"reason": reason})

    def decided(self, outcome: str, arm: str | None, degraded: bool, seconds: float,
                fired: list[FiredRule]) -> None:
        self._requests.add(1, {"outcome": outcome, "arm": arm or "none",
                               "degraded": str(degraded).lower()})
        self._latency.record(seconds)
        for rule in fired:
            self._fired.add(1, {"rule": rule.rule, "reason_code": rule.reason_code})

    def degraded(self, reason: str) -> None:
        self._degraded.add(1, {"reason": reason})

    def replayed(self) -> None:
        self._replays.add(1)

    def http(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one HTTP request (decisions are timed by ``rtml_decision_latency_seconds``)."""
        del seconds
        self._http.add(1, {"route": route, "method": method, "status": str(status)})

    def undelivered(self, count: int) -> None:
        self._undelivered.add(count)

    def log_written(self, count: int) -> None:
        self._log_written.add(count)
        self._log_pending.add(-count)

    def log_pending(self, count: int) -> None:
        self._log_pending.add(count)

    def log_failed(self) -> None:
        self._log_failures.add(1)

    def rules_revision(self, revision: int) -> None:
        self._rules_revision.set(revision)

    def rules_sync_failed(self, reason: str) -> None:
        self._rules_sync_failures.add(1, {"reason": reason})
