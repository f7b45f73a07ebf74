"""What a check report exports: counters by feature and lag, the diff histogram, rolling max."""

from __future__ import annotations

import math
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from rtml_consistency_monitor.check import CheckReport, FeatureResult, Lag
from rtml_consistency_monitor.metrics import ConsistencyMetrics, RollingMax


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def value(found: dict[str, list[Any]], name: str, **labels: str) -> Any:
    [point] = [p for p in found[name] if dict(p.attributes) == labels]
    return point


def test_report_is_exported_by_feature_and_lag() -> None:
    reader = InMemoryMetricReader()
    clock = Clock()
    instruments = ConsistencyMetrics(["a", "b"], 600, clock,
                                     MeterProvider(metric_readers=[reader]).get_meter("t"))
    report = CheckReport()
    report.results = [
        FeatureResult("a", Lag.CURRENT, 1.0, 1.0, 0.0, False),
        FeatureResult("a", Lag.CURRENT, 2.0, 1.5, 0.5, True),
        FeatureResult("a", Lag.BEHIND, 3.0, 1.0, 2.0, True),
        FeatureResult("b", Lag.CURRENT, math.nan, 1.0, math.inf, True),
    ]
    report.entity_lags.update({("customer", "current"): 2, ("customer", "behind"): 1})
    report.outcomes.update({"checked": 3})
    instruments.record(report)
    found = points(reader)
    assert value(found, "rtml_consistency_checked", feature="a", lag="current").value == 2
    assert value(found, "rtml_consistency_checked", feature="a", lag="behind").value == 1
    assert value(found, "rtml_consistency_mismatches", feature="a", lag="current").value == 1
    assert value(found, "rtml_consistency_mismatches", feature="b", lag="current").value == 1
    histogram = value(found, "rtml_consistency_abs_diff", feature="a")
    assert histogram.count == 3 and histogram.sum == 2.5  # the infinite one is not recorded
    assert value(found, "rtml_consistency_max_abs_diff", feature="a").value == 2.0
    assert value(found, "rtml_consistency_max_abs_diff", feature="b").value > 1e300
    assert value(found, "rtml_consistency_lag", entity="customer", lag="behind").value == 1
    assert value(found, "rtml_consistency_decisions", outcome="checked").value == 3
    assert value(found, "rtml_consistency_decisions", outcome="dropped").value == 0


def test_rolling_max_forgets_values_older_than_its_window() -> None:
    clock = Clock()
    rolling = RollingMax(10.0, clock)
    rolling.add("a", 5.0)
    clock.now = 4.0
    rolling.add("a", 1.0)
    assert rolling.value("a") == 5.0
    clock.now = 12.0
    assert rolling.value("a") == 1.0
    clock.now = 30.0
    assert rolling.value("a") == 0.0
    assert rolling.value("never") == 0.0
