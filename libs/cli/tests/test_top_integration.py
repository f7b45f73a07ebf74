"""``rtml top --once`` against a real Prometheus scraping real metrics endpoints.

Three endpoints stand in for services, each exporting a few of the real
metric names through the same OpenTelemetry -> Prometheus exporter the
services use (so names get their ``_total`` / ``_seconds`` suffixes exactly as
in production): the decision API, the drift monitor and the platform
supervisor. Prometheus finds ``top`` through a ``stack.json`` like the one
``rtml stack up`` writes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, start_http_server
from typer.testing import CliRunner

from rtml_cli.top.command import top_command
from rtml_common.metric_buckets import DURATION_SECONDS
from rtml_localstack.state import ComponentRecord, StackState, now_iso

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

#: Seconds allowed for Prometheus to pick up the target files and scrape them.
SCRAPE_DEADLINE_S = 90.0


@dataclass
class Endpoint:
    """A /metrics endpoint on a free port, fed by its own OpenTelemetry meter provider."""

    meter: Meter
    address: str
    provider: MeterProvider
    server: Any

    @classmethod
    def start(cls, scope: str) -> Endpoint:
        registry = CollectorRegistry()
        provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
        server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        return cls(provider.get_meter(scope), f"127.0.0.1:{server.server_port}", provider,
                   server)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.provider.shutdown()


@pytest.fixture
def endpoints() -> Iterator[dict[str, Endpoint]]:
    started = {job: Endpoint.start(scope) for job, scope in (
        ("decision-api", "rtml.decision"), ("drift-monitor", "rtml.drift_monitor"),
        ("platform-supervisor", "rtml.platform"))}
    yield started
    for endpoint in started.values():
        endpoint.close()


def feed(endpoints: dict[str, Endpoint]) -> None:
    """A few of each service's real instruments, with known values."""
    decision = endpoints["decision-api"].meter
    requests = decision.create_counter("rtml_decision_requests")
    for outcome, count in (("approve", 7), ("review", 2), ("decline", 1)):
        requests.add(count, {"outcome": outcome, "arm": "none", "degraded": "false"})
    latency = decision.create_histogram("rtml_decision_latency", unit="s",
                                        explicit_bucket_boundaries_advisory=DURATION_SECONDS)
    for seconds in (0.004, 0.006, 0.02):
        latency.record(seconds)
    decision.create_counter("rtml_decision_rules_fired").add(
        3, {"rule": "high_score", "reason_code": "HIGH_SCORE"})
    decision.create_counter("rtml_decision_degraded").add(1, {"reason": "redis_unavailable"})

    def lag(_options: CallbackOptions) -> list[Observation]:
        return [Observation(2.5, {"group": "decision-api", "topic": "labels",
                                  "partition": "0"})]
    decision.create_observable_gauge("rtml_consumer_lag", callbacks=[lag], unit="s")

    drift = endpoints["drift-monitor"].meter
    psi = drift.create_gauge("rtml_drift_monitor_psi")
    psi.set(0.42, {"subject": "top_probe_amount", "window": "tumbling"})
    psi.set(0.05, {"subject": "top_probe_amount", "window": "sliding"})
    drift.create_gauge("rtml_drift_monitor_alert_active").set(
        1, {"subject": "top_probe_amount", "window": "tumbling"})

    supervisor = endpoints["platform-supervisor"].meter
    up = supervisor.create_gauge("rtml_platform_service_up")
    restarts = supervisor.create_counter("rtml_platform_service_restarts")
    for service, state, restarted in (("decision-api", 1, 0), ("scorer", 0, 4)):
        up.set(state, {"service": service})
        restarts.add(restarted, {"service": service})


def cells(text: str, first_cell: str) -> list[str]:
    """The row starting with ``first_cell`` (cells are 2+ spaces apart), [] if absent."""
    for line in text.splitlines():
        found = re.split(r"\s{2,}", line.strip())
        if found[0] == first_cell:
            return found
    return []


def top_once(state_dir: Path) -> str:
    app = typer.Typer()
    app.command()(top_command)
    result = CliRunner().invoke(app, ["--once", "--state-dir", str(state_dir)],
                                env={"RTML_PROMETHEUS_URL": ""})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_once_shows_what_prometheus_scraped(prometheus_server: Any, endpoints: dict[str, Endpoint],
                                            tmp_path: Path) -> None:
    feed(endpoints)
    host, port = prometheus_server.url.removeprefix("http://").rsplit(":", 1)
    state = StackState(tmp_path)
    state.components["prometheus"] = ComponentRecord(
        pid=0, port=int(port), host=host, started_at=now_iso(), command=["prometheus"],
        log=str(tmp_path / "prometheus.log"))
    state.save()
    for job, endpoint in endpoints.items():
        prometheus_server.add_target(endpoint.address, job)
    try:
        for job in endpoints:
            prometheus_server.wait_for_scrape(job, timeout_s=SCRAPE_DEADLINE_S)
        # Every endpoint answered a scrape; poll until top reads all of it (one pass normally).
        deadline = time.monotonic() + SCRAPE_DEADLINE_S
        while True:
            text = top_once(tmp_path)
            ready = (cells(text, "approve") and cells(text, "top_probe_amount")
                     and cells(text, "scorer")[1:2] == ["DOWN"])
            if ready or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        for job in endpoints:
            prometheus_server.remove_target(job)

    assert text.startswith(f"rtml top  Prometheus {prometheus_server.url}  "), text
    decision_api = cells(text, "decision-api")
    assert decision_api[1:4] == ["up", "ok", "0"], text
    assert decision_api[6] == "2.50 s", text  # consumer lag, from rtml_consumer_lag_seconds
    scorer = cells(text, "scorer")  # not scraped here: only the supervisor's view
    assert (scorer[1], scorer[3]) == ("DOWN", "4"), text
    assert cells(text, "drift-monitor")[2] == "ok", text
    assert cells(text, "approve")[:3] == ["approve", "7", "70%"], text
    assert cells(text, "review")[:3] == ["review", "2", "20%"], text
    assert cells(text, "decline")[:3] == ["decline", "1", "10%"], text
    assert "HIGH_SCORE (high_score)" in cells(text, "approve")
    assert "redis_unavailable" in cells(text, "approve")
    assert cells(text, "top_probe_amount") == ["top_probe_amount", "0.4200", "0.0500", "ALERT"]
    lines = text.splitlines()
    summary = lines.index(next(line for line in lines if line.startswith("decisions/s")))
    figures = re.split(r"\s{2,}", lines[summary + 1].strip())
    assert (figures[1], figures[-1]) == ("10", "1"), text  # decisions, degraded answers
    assert max(len(line) for line in text.splitlines()) > 80
