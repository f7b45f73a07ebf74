"""`rtml stack up|status|env|down` as a user runs it: separate processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rtml_localstack.ports import free_ports
from rtml_localstack.process import pid_alive
from rtml_localstack.state import StackState

pytestmark = pytest.mark.integration


def _cli(*args: str, state_dir: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtml_localstack.cli", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},  # wide enough that table cells don't wrap
    )


def _components(state_dir: Path) -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, object]] = json.loads((state_dir / "stack.json").read_text())[
        "components"
    ]
    return data


def test_up_status_up_again_env_down(tmp_path: Path) -> None:
    state = tmp_path / "stack"
    kafka_port, redis_port = free_ports(2)
    ports = ["--kafka-port", str(kafka_port), "--redis-port", str(redis_port)]
    try:
        first = _cli("up", "--only", "kafka,redis", *ports, state_dir=state)
        assert first.returncode == 0, first.stdout + first.stderr
        components = _components(state)
        assert set(components) == {"kafka", "redis"}
        pids = {name: rec["pid"] for name, rec in components.items()}
        assert all(pid_alive(int(str(pid))) for pid in pids.values())
        assert components["kafka"]["port"] == kafka_port
        assert (state / "logs" / "kafka.log").exists()

        status = _cli("status", state_dir=state)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("yes") == 2
        assert f"127.0.0.1:{redis_port}" in status.stdout

        again = _cli("up", "--only", "kafka,redis", *ports, state_dir=state)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "running kafka" in again.stdout and "running redis" in again.stdout
        assert {n: r["pid"] for n, r in _components(state).items()} == pids

        env = _cli("env", state_dir=state)
        assert env.returncode == 0
        assert f"export RTML_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{kafka_port}" in env.stdout
        assert f"export RTML_REDIS_URL=redis://127.0.0.1:{redis_port}/0" in env.stdout
    finally:
        down = _cli("down", state_dir=state)
    assert down.returncode == 0, down.stdout + down.stderr
    assert _components(state) == {}
    assert not any(pid_alive(int(str(pid))) for pid in pids.values())
    assert "nothing running" in _cli("down", state_dir=state).stdout
    assert _cli("env", state_dir=state).returncode == 1


def test_port_taken_by_a_stranger_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = _cli("up", "--only", "redis", "--redis-port", str(port), state_dir=tmp_path)
    assert result.returncode == 1
    assert f"port {port} is taken by" in result.stderr
    assert "--redis-port" in result.stderr
    assert StackState.load(tmp_path).components == {}


def test_unknown_component_is_rejected(tmp_path: Path) -> None:
    result = _cli("up", "--only", "kafka,zookeeper", state_dir=tmp_path)
    assert result.returncode == 2
    assert "unknown component(s): zookeeper" in result.stderr
