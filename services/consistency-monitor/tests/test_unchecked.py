"""A feature set the monitor cannot re-compute: it starts, says so, and checks nothing.

The platform can serve any feature set (``rtml demo --feature-set payments``);
the monitor re-computes only the first definitions over the handbook's
transactions. For another set it must not crash (the supervisor would restart
it forever): it logs why, exports ``rtml_consistency_feature_set_checked`` 0
and stays up without consuming, until stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from rtml_common.config import KafkaSettings
from rtml_consistency_monitor import service
from rtml_consistency_monitor.check import Checker, unchecked_reason
from rtml_consistency_monitor.config import Settings
from rtml_consistency_monitor.metrics import record_feature_set_checked
from rtml_features.baseline import BASELINE, get_feature_set
from rtml_features.definitions import (
    Agg,
    Entity,
    FeatureSet,
    UnsupportedDefinition,
    WindowAggregate,
)

PAYMENTS_REPO = Path(__file__).resolve().parents[3] / "examples" / "feature_repos" / "payments"
#: Nothing listens here: a monitor that does not check must not need the broker either.
NO_BROKER = KafkaSettings(bootstrap_servers="127.0.0.1:1")


@pytest.fixture
def payments(monkeypatch: pytest.MonkeyPatch) -> FeatureSet:
    monkeypatch.setenv("RTML_FEATURE_REPO", str(PAYMENTS_REPO))
    return get_feature_set("payments")


def test_the_handbook_sets_are_checked() -> None:
    assert unchecked_reason(BASELINE) is None


def test_another_schema_is_not_checked_and_says_which(payments: FeatureSet) -> None:
    reason = unchecked_reason(payments)
    assert reason is not None and "'payment'" in reason and "handbook" in reason
    with pytest.raises(UnsupportedDefinition):
        Checker(payments, 1e-9)  # what used to crash the service at start-up


def test_a_definition_it_cannot_compute_is_named() -> None:
    card = Entity("customer", key="customer_id")
    gap = FeatureSet("gaps", [WindowAggregate("gap", card, Agg.TIME_SINCE_PREVIOUS,
                                              timedelta(days=1))])
    reason = unchecked_reason(gap)
    assert reason is not None and "gap" in reason and "time_since_previous" in reason


def test_the_gauge_says_whether_the_set_is_checked() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    record_feature_set_checked("payments", False, meter)
    record_feature_set_checked("extended", True, meter)
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, Any] = {
        dict(point.attributes)["feature_set"]: point.value
        for resource in data.resource_metrics for scope in resource.scope_metrics
        for metric in scope.metrics if metric.name == "rtml_consistency_feature_set_checked"
        for point in metric.data.data_points}
    assert points == {"payments": 0, "extended": 1}


def test_run_stays_up_without_a_broker_and_logs_why(
        payments: FeatureSet, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=service.__name__)
    started = time.monotonic()
    run = service.run(Settings(feature_set="payments"), NO_BROKER, max_idle_s=0.3,
                      install_signal_handlers=False)
    assert time.monotonic() - started >= 0.3  # it stayed up for its idle time
    assert run.unchecked is not None and "'payment'" in run.unchecked
    assert run.loop.consumed == 0 and run.checked_values == 0
    [record] = [r for r in caplog.records if "is not checked" in r.getMessage()]
    assert "feature set payments" in record.getMessage()


def test_run_stops_when_asked(payments: FeatureSet) -> None:
    stop = threading.Event()
    result: list[service.MonitorRun] = []
    thread = threading.Thread(target=lambda: result.append(service.run(
        Settings(feature_set="payments"), NO_BROKER, install_signal_handlers=False,
        stop=stop)))
    thread.start()
    time.sleep(0.2)
    assert thread.is_alive()  # no idle limit: up until stopped
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and result[0].unchecked is not None
