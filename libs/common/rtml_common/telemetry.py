"""One call per service sets up traces, metrics and logs the same way everywhere.

Metrics are recorded through the OpenTelemetry API (so library code such as
the consumer loop can count without knowing whether telemetry is on: the API
is a no-op until :func:`init_telemetry` runs) and exposed on a Prometheus
``/metrics`` endpoint; traces go to an OTLP/HTTP endpoint when one is
configured (the collector in docker-compose); logs are JSON lines carrying the
current trace and span ids so a log line can be found from a trace and back.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import start_http_server

from rtml_common.config import TelemetrySettings


@dataclass(frozen=True)
class Telemetry:
    """Handles of an initialised service's telemetry."""

    service_name: str
    tracer: trace.Tracer
    meter: metrics.Meter
    metrics_port: int | None


_lock = threading.Lock()
_current: Telemetry | None = None


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, with trace/span ids of the active span."""

    def __init__(self, service_name: str) -> None:
        super().__init__()
        self.service_name = service_name

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service_name,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(service_name: str, settings: TelemetrySettings) -> None:
    """Route the root logger to stderr as JSON (or plain text when disabled)."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_json:
        handler.setFormatter(JsonLogFormatter(service_name))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())


def init_telemetry(service_name: str, settings: TelemetrySettings | None = None) -> Telemetry:
    """Initialise tracing, metrics and logging once per process; later calls return the first.

    The Prometheus endpoint starts only when ``metrics_port`` is non-zero, so
    tests and CLIs can initialise telemetry without binding a port.
    """
    global _current
    with _lock:
        if _current is not None:
            return _current
        settings = settings or TelemetrySettings()
        resource = Resource.create({SERVICE_NAME: service_name})

        tracer_provider = TracerProvider(resource=resource)
        if settings.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
            tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint)))
        trace.set_tracer_provider(tracer_provider)

        meter_provider = MeterProvider(resource=resource, metric_readers=[PrometheusMetricReader()])
        metrics.set_meter_provider(meter_provider)
        metrics_port: int | None = None
        if settings.metrics_port:
            start_http_server(settings.metrics_port, addr=settings.metrics_host)
            metrics_port = settings.metrics_port

        configure_logging(service_name, settings)
        _current = Telemetry(
            service_name=service_name,
            tracer=trace.get_tracer(service_name),
            meter=metrics.get_meter(service_name),
            metrics_port=metrics_port,
        )
        return _current
