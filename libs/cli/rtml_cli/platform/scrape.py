"""Read one service's Prometheus endpoint directly (no Prometheus server needed).

The demo summarises a short run from the services' own counters; going
through a Prometheus server would make it wait for scrapes and fail where
the stack runs without one. ``rtml top`` reads the same series through the
Prometheus API instead, where history and rates matter.

>>> samples = parse('rtml_x_total{role="champion",otel_scope_name="s"} 3.0\\n')
>>> samples[0].name, samples[0].labels, samples[0].value
('rtml_x_total', {'role': 'champion'}, 3.0)
>>> total(samples, "rtml_x_total", role="champion"), total(samples, "rtml_x_total", role="shadow")
(3.0, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

#: Labels every OpenTelemetry series carries; dropped so callers see the service's own.
_SCOPE_LABELS = ("otel_scope_name", "otel_scope_schema_url", "otel_scope_version")


@dataclass(frozen=True)
class MetricSample:
    """One series' value at the time of the scrape."""

    name: str
    labels: dict[str, str]
    value: float


def parse(text: str) -> list[MetricSample]:
    """Every sample of a Prometheus text exposition."""
    return [MetricSample(sample.name,
                         {k: v for k, v in sample.labels.items() if k not in _SCOPE_LABELS},
                         float(sample.value))
            for family in text_string_to_metric_families(text) for sample in family.samples]


def scrape(port: int, host: str = "127.0.0.1", timeout_s: float = 5.0) -> list[MetricSample]:
    """The samples a service's endpoint serves now (``httpx.HTTPError`` if it does not answer)."""
    response = httpx.get(f"http://{host}:{port}/metrics", timeout=timeout_s)
    response.raise_for_status()
    return parse(response.text)


def total(samples: list[MetricSample], name: str, **labels: str) -> float:
    """The sum of ``name``'s series whose labels include ``labels`` (0 when none)."""
    return sum((s.value for s in samples
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())), 0.0)
