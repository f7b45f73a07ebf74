"""The orchestrator and process handling, with tiny stand-in components.

These use real processes (``sh``, ``sleep``) in place of servers, so they
check what the stack does when a component dies at start, never gets
healthy, or a recorded pid now belongs to someone else.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest

from rtml_localstack import process
from rtml_localstack.errors import NotReady, StackError
from rtml_localstack.launchers import LAUNCHERS, ComponentLauncher
from rtml_localstack.launchers.cassandra import CassandraLauncher
from rtml_localstack.launchers.prometheus import PrometheusLauncher, remove_targets, write_targets
from rtml_localstack.ports import free_port, port_in_use, port_open
from rtml_localstack.stack import Stack, select_components
from rtml_localstack.state import ComponentRecord, StackState


class _ShellLauncher(ComponentLauncher):
    """A "server" that is a shell command; healthy when its port accepts connections."""

    name: ClassVar[str] = "shell"
    default_port: ClassVar[int] = 1
    start_timeout_s: ClassVar[float] = 1.0

    def __init__(self, script: str = "", port: int | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(port or free_port(), host)
        self.script = script

    def command(self, state_dir: Path) -> list[str]:
        return ["/bin/sh", "-c", self.script]

    def health_check(self, timeout_s: float = 2.0) -> None:
        if not port_open(self.port, self.host, timeout_s):
            raise NotReady(f"port {self.port} closed")


@pytest.fixture
def shell_component(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(LAUNCHERS, "shell", _ShellLauncher)


def test_select_components() -> None:
    assert select_components() == ["kafka", "redis", "mlflow", "cassandra", "prometheus"]
    assert select_components(only=["redis", "kafka"]) == ["kafka", "redis"]
    assert select_components(without=["mlflow", "cassandra"]) == ["kafka", "redis", "prometheus"]
    with pytest.raises(StackError, match="unknown component"):
        select_components(only=["zookeeper"])


def test_port_helpers() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_in_use(port)
        assert port_open(port)
    assert not port_in_use(port)


@pytest.mark.usefixtures("shell_component")
def test_component_that_exits_at_start_fails_with_its_log(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    [result] = stack.up([_ShellLauncher("echo 'config error: boom'; exit 3")])
    assert result.outcome == "failed"
    assert "exited with code 3" in result.detail
    assert "config error: boom" in result.detail
    assert StackState.load(tmp_path).components == {}


@pytest.mark.usefixtures("shell_component")
def test_component_never_healthy_is_stopped_and_reported(tmp_path: Path) -> None:
    stack = Stack(tmp_path, timeout_s=0.5)
    [result] = stack.up([_ShellLauncher("echo starting; exec sleep 60")])
    assert result.outcome == "failed"
    assert "not healthy after 0.5 s" in result.detail and "port" in result.detail
    assert result.pid is not None and not process.pid_alive(result.pid)
    assert StackState.load(tmp_path).components == {}


@pytest.mark.usefixtures("shell_component")
def test_up_is_idempotent_and_down_stops_the_process_group(tmp_path: Path) -> None:
    port = free_port()
    # A parent shell with a child listening: the whole group must go on down.
    script = (
        f"{sys.executable} -c 'import socket,time; s=socket.socket(); "
        f's.bind(("127.0.0.1",{port})); s.listen(); time.sleep(60)\' & wait'
    )
    stack = Stack(tmp_path, timeout_s=10)
    [first] = stack.up([_ShellLauncher(script, port=port)])
    assert first.outcome == "started", first.detail
    [second] = stack.up([_ShellLauncher(script, port=port)])
    assert second.outcome == "running" and second.pid == first.pid
    [status] = stack.status()
    assert status.alive and status.healthy
    [stopped] = stack.down()
    assert stopped.detail == "stopped"
    assert not port_open(port)
    assert stack.down() == []


def test_stop_leaves_a_process_alone_when_its_identity_differs(tmp_path: Path) -> None:
    identity = process.spawn(["sleep", "60"], tmp_path / "sleep.log")
    try:
        impostor = process.ProcessIdentity(identity.pid, "other-boot:123", identity.program)
        assert process.stop(impostor, timeout_s=1) == "not ours any more (pid reused); left alone"
        assert process.pid_alive(identity.pid)
        wrong_program = process.ProcessIdentity(identity.pid, identity.start_marker, "redis")
        assert not process.matches(wrong_program)
    finally:
        assert process.stop(identity, timeout_s=5) == "stopped"
    assert not process.pid_alive(identity.pid)


def test_stale_record_is_replaced_on_up(tmp_path: Path, shell_component: None) -> None:
    port = free_port()
    state = StackState(tmp_path)
    state.components["shell"] = ComponentRecord(
        pid=2**22 - 1, port=port, host="127.0.0.1", started_at="2026-01-01T00:00:00+00:00",
        command=["x"], log=str(tmp_path / "x.log"), start_marker="gone:1", program="x",
    )  # fmt: skip
    state.save()
    script = f"exec {sys.executable} -m http.server --bind 127.0.0.1 {port}"
    stack = Stack(tmp_path, timeout_s=15)
    try:
        [result] = stack.up([_ShellLauncher(script, port=port)])
        assert result.outcome == "started", result.detail
        assert StackState.load(tmp_path).components["shell"].pid == result.pid
    finally:
        stack.down()


def test_prometheus_config_and_target_files(tmp_path: Path) -> None:
    launcher = PrometheusLauncher(port=19999, scrape_interval_s=2)
    launcher.prepare(tmp_path)
    config = json.loads((tmp_path / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["127.0.0.1:19999"]
    pattern = jobs["rtml"]["file_sd_configs"][0]["files"][0]
    assert pattern == str((tmp_path / "prometheus" / "targets").resolve() / "*.json")

    path = write_targets(tmp_path, "scoring", ["127.0.0.1:8001"], {"env": "local"})
    assert json.loads(path.read_text()) == [
        {"targets": ["127.0.0.1:8001"], "labels": {"job": "scoring", "env": "local"}}
    ]
    assert remove_targets(tmp_path, "scoring") and not path.exists()
    with pytest.raises(ValueError, match="job name"):
        write_targets(tmp_path, "bad/name", ["x:1"])


def test_cassandra_config_binds_loopback_with_data_in_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jar = tmp_path / "fake.jar"
    jar.write_bytes(b"")
    monkeypatch.setenv("RTML_CASSANDRA_JAR", str(jar))
    launcher = CassandraLauncher(port=19042, heap="128M")
    launcher.prepare(tmp_path)
    text = (tmp_path / "cassandra" / "cassandra.yaml").read_text()
    assert "native_transport_port: 19042" in text
    assert "listen_address: 127.0.0.1" in text and "rpc_address: 127.0.0.1" in text
    assert f"- {(tmp_path / 'cassandra' / 'data').resolve()}" in text
    command = launcher.command(tmp_path)
    assert "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED" in command
    assert "-Xmx128M" in command and command[-1] == "org.apache.cassandra.service.CassandraDaemon"


def test_servers_of_a_killed_test_process_do_not_outlive_it(tmp_path: Path) -> None:
    log = tmp_path / "sleep.log"
    script = (
        "import os\n"
        "from pathlib import Path\n"
        "from rtml_localstack import process\n"
        f"identity = process.spawn(['sleep', '60'], Path({str(log)!r}), die_with_parent=True)\n"
        "print(identity.pid, flush=True)\n"
        "os._exit(0)  # no teardown, as when pytest is SIGKILLed\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    pid = int(done.stdout)
    for _ in range(100):  # bounded wait for the kernel's parent-death signal
        if not process.pid_alive(pid):
            break
        time.sleep(0.05)
    assert not process.pid_alive(pid)
