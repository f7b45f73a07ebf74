"""``python -m rtml_model_registry`` really serves: API, Prometheus metrics, clean SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from rtml_localstack.environment import without_developer_settings
from rtml_localstack.ports import free_port

pytestmark = pytest.mark.integration


def wait_until_up(url: str, process: subprocess.Popen[str], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the service exited with {process.returncode}: "
                                 f"{process.stderr.read() if process.stderr else ''}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the service did not answer /healthz within {timeout_s:g} s")


def test_entry_point_serves_the_api_and_metrics_then_stops_on_sigterm(
        mlflow_server: Any, kafka_broker: Any, tmp_path: Path, register: Any,
        good_model: Any, model_name: str) -> None:
    register(model_name, good_model)
    port, metrics_port = free_port(), free_port()
    base = without_developer_settings(os.environ)
    env = {**base, "RTML_MLFLOW_TRACKING_URI": mlflow_server.tracking_uri,
           "RTML_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
           "RTML_MODEL_REGISTRY_HTTP_PORT": str(port),
           "RTML_MODEL_REGISTRY_AUDIT_DB": str(tmp_path / "audit" / "audit.sqlite"),
           "RTML_MODEL_REGISTRY_API_KEY": "k" * 20,
           "RTML_TELEMETRY_METRICS_PORT": str(metrics_port)}
    process = subprocess.Popen([sys.executable, "-m", "rtml_model_registry"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        assert httpx.get(f"{url}/healthz").json()["read_only"] is False
        versions = httpx.get(f"{url}/v1/models/{model_name}/versions").json()["versions"]
        assert [v["version"] for v in versions] == ["1"]
        wrong = httpx.put(f"{url}/v1/models/{model_name}/aliases/champion",
                          headers={"X-API-Key": "nope"},
                          json={"version": "1", "actor": "a", "reason": "b"})
        assert wrong.status_code == 401
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert re.search(r'^rtml_model_registry_requests_total\{[^}]*route="/healthz"[^}]*'
                         r'status="200"[^}]*\} [1-9]', metrics, re.MULTILINE), metrics
        assert re.search(r'^rtml_model_registry_requests_total\{[^}]*route="/v1/models/\{name\}'
                         r'/aliases/\{alias\}"[^}]*status="401"', metrics, re.MULTILINE)
        assert "rtml_model_registry_request_seconds_bucket{" in metrics
        assert (tmp_path / "audit" / "audit.sqlite").is_file()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, stderr
    assert '"message":"stopped"' in stderr
