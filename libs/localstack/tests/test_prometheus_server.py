"""The local Prometheus: file-based targets added at run time get scraped."""

from __future__ import annotations

import json

import pytest

from rtml_localstack.ports import free_port
from rtml_localstack.testing import PrometheusServer

pytestmark = pytest.mark.integration


def test_added_target_is_scraped_and_queryable(prometheus_server: PrometheusServer) -> None:
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    registry = CollectorRegistry()
    counter = Counter("rtml_localstack_probe", "A counter for the scrape test", registry=registry)
    counter.inc(7)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        prometheus_server.add_target(f"127.0.0.1:{port}", job="probe-service")
        target_file = prometheus_server.state_dir / "prometheus" / "targets" / "probe-service.json"
        assert json.loads(target_file.read_text())[0]["targets"] == [f"127.0.0.1:{port}"]

        prometheus_server.wait_for_scrape("probe-service", timeout_s=40)

        result = prometheus_server.query('rtml_localstack_probe_total{job="probe-service"}')
        assert [float(sample["value"][1]) for sample in result] == [7.0]
    finally:
        prometheus_server.remove_target("probe-service")
        server.shutdown()
        thread.join(timeout=5)


def test_prometheus_scrapes_itself(prometheus_server: PrometheusServer) -> None:
    prometheus_server.wait_for_scrape("prometheus", timeout_s=30)
