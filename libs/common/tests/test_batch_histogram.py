"""BatchHistogram: the series an OpenTelemetry histogram would export, fed per batch."""

from __future__ import annotations

import doctest
import threading

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest

from rtml_common import batch_histogram
from rtml_common.batch_histogram import BatchHistogram

BOUNDS = [0.001, 0.01, 0.1, 1, 10]
VALUES = [0.0, 0.0005, 0.001, 0.002, 0.01, 0.05, 0.1, 0.7, 1.0, 3.5, 10.0, 99.0]


def series(text: str, name: str) -> dict[str, float]:
    """Sample line (labels minus the otel_scope_* ones) -> value, for ``name``'s samples."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            sample, value = line.rsplit(" ", 1)
            labels = ",".join(part for part in sample[sample.find("{") + 1:-1].split(",")
                              if part and not part.startswith("otel_scope_schema_url")
                              and not part.startswith("otel_scope_version"))
            found[f"{sample.split('{')[0]}{{{labels}}}"] = float(value)
    return found


def test_exports_what_the_opentelemetry_exporter_exports_for_the_same_values() -> None:
    ours = CollectorRegistry()
    histogram = BatchHistogram("rtml_demo_latency", "s", "Demo", BOUNDS, "rtml.demo",
                               registry=ours)
    histogram.observe_many(VALUES[:5])
    histogram.observe_many(VALUES[5:])  # batches add up

    # The same values through the OpenTelemetry SDK and its Prometheus exporter.
    reader = PrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        otel = provider.get_meter("rtml.demo").create_histogram(
            "rtml_demo_latency", unit="s", description="Demo",
            explicit_bucket_boundaries_advisory=BOUNDS)
        for value in VALUES:
            otel.record(value)
        from prometheus_client import REGISTRY
        theirs = series(generate_latest(REGISTRY).decode(), "rtml_demo_latency_seconds")
    finally:
        provider.shutdown()
    assert theirs  # the exporter did export it
    got = series(generate_latest(ours).decode(), "rtml_demo_latency_seconds")
    total = 'rtml_demo_latency_seconds_sum{otel_scope_name="rtml.demo"}'
    assert got.pop(total) == pytest.approx(theirs.pop(total), rel=1e-12)  # batch-wise sums
    assert got == theirs  # every bucket, the count, names and labels


def test_a_value_on_a_bound_counts_in_that_bucket_and_sum_and_count_add_up() -> None:
    registry = CollectorRegistry()
    histogram = BatchHistogram("on_bound", "ms", "x", [1, 2], "s", registry=registry)
    histogram.observe_many([1.0, 2.0, 2.5])
    got = series(generate_latest(registry).decode(), "on_bound_milliseconds")
    assert got['on_bound_milliseconds_bucket{le="1",otel_scope_name="s"}'] == 1
    assert got['on_bound_milliseconds_bucket{le="2",otel_scope_name="s"}'] == 2
    assert got['on_bound_milliseconds_bucket{le="+Inf",otel_scope_name="s"}'] == 3
    assert got['on_bound_milliseconds_count{otel_scope_name="s"}'] == 3
    assert got['on_bound_milliseconds_sum{otel_scope_name="s"}'] == 5.5


def test_concurrent_batches_lose_nothing() -> None:
    registry = CollectorRegistry()
    histogram = BatchHistogram("concurrent", "s", "x", [0.5], "s", registry=registry)
    threads = [threading.Thread(target=lambda: [histogram.observe_many([0.1, 0.9])
                                                for _ in range(2000)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    got = series(generate_latest(registry).decode(), "concurrent_seconds")
    assert got['concurrent_seconds_count{otel_scope_name="s"}'] == 16_000
    assert got['concurrent_seconds_bucket{le="0.5",otel_scope_name="s"}'] == 8_000


def test_shared_returns_one_histogram_per_registry_and_name() -> None:
    registry = CollectorRegistry(auto_describe=True)  # checks names, like the global one
    first = BatchHistogram.shared("shared_one", "s", "x", [1], "s", registry=registry)
    assert BatchHistogram.shared("shared_one", "s", "x", [1], "s", registry=registry) is first
    assert BatchHistogram.shared("shared_one", "s", "x", [1], "s",
                                 registry=CollectorRegistry()) is not first
    with pytest.raises(ValueError, match="Duplicated"):  # a second, unshared one is refused
        BatchHistogram("shared_one", "s", "x", [1], "s", registry=registry)


def test_bounds_must_increase() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        BatchHistogram("bad", "s", "x", [1, 1, 2], "s", registry=None)


def test_docstring_examples() -> None:
    result = doctest.testmod(batch_histogram)
    assert result.attempted > 0 and result.failed == 0
