"""The service's metrics, through the OpenTelemetry API like every rtml service.

The API is a no-op until :func:`rtml_common.telemetry.init_telemetry` runs
(``__main__`` does; tests need not), and the Prometheus exporter adds the
``_total`` suffix to counters and the unit to histograms, so the series are:

* ``rtml_model_registry_requests_total{route,method,status}``
* ``rtml_model_registry_request_seconds{route,method}`` (histogram)
* ``rtml_model_registry_alias_changes_total{alias,action}``
* ``rtml_model_registry_gate_refusals_total{check}`` (one per failed check)
* ``rtml_model_registry_gate_seconds`` (histogram of whole gate runs)
* ``rtml_model_registry_events_undelivered_total`` (failed publish attempts)
"""

from __future__ import annotations

from opentelemetry import metrics

from rtml_common.metric_buckets import DURATION_SECONDS
from rtml_model_registry.gate.report import GateReport


class RegistryMetrics:
    """The instruments, created once per app."""

    def __init__(self) -> None:
        meter = metrics.get_meter("rtml.model_registry")
        self._requests = meter.create_counter(
            "rtml_model_registry_requests", description="API requests, by route and status")
        self._request_seconds = meter.create_histogram(
            "rtml_model_registry_request", unit="s", description="API latency, by route",
            explicit_bucket_boundaries_advisory=list(DURATION_SECONDS))
        self._alias_changes = meter.create_counter(
            "rtml_model_registry_alias_changes", description="Alias changes, by alias and action")
        self._refusals = meter.create_counter(
            "rtml_model_registry_gate_refusals",
            description="Gate refusals, one per failed check")
        self._gate_seconds = meter.create_histogram(
            "rtml_model_registry_gate", unit="s", description="Whole gate runs",
            explicit_bucket_boundaries_advisory=[0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120])
        self._undelivered = meter.create_counter(
            "rtml_model_registry_events_undelivered",
            description="model-events publish attempts that failed")

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._requests.add(1, {"route": route, "method": method, "status": str(status)})
        self._request_seconds.record(seconds, {"route": route, "method": method})

    def gate(self, report: GateReport) -> None:
        self._gate_seconds.record(report.timings_ms.get("total", 0.0) / 1000)
        for check in report.failures:
            self._refusals.add(1, {"check": check.name})

    def alias_changed(self, alias: str, action: str) -> None:
        self._alias_changes.add(1, {"alias": alias, "action": action})

    def undelivered(self) -> None:
        self._undelivered.add(1)
