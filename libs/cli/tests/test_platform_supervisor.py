"""The supervisor as a real detached process, over stand-in services (no stack needed).

A spec of two children: one that stays up (``python -m http.server``) and
one that cannot start (a module that does not exist). The supervisor must
keep the first healthy, restart the second with backoff and count it, say
so in ``platform.json`` and on its metrics endpoint; ``wait_healthy`` must
fail naming the broken one and quoting its log; ``down`` must leave no
process behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rtml_cli.platform.catalog import PlatformPorts, ServiceSpec
from rtml_cli.platform.control import (
    _choose_ports,
    _launch_supervisor,
    down,
    service_rows,
    wait_healthy,
)
from rtml_cli.platform.files import PlatformError, PlatformPaths, PlatformSpec, read_status
from rtml_localstack.ports import free_ports
from rtml_localstack.process import group_alive, pid_alive
from rtml_localstack.stack import Stack, build_launchers
from rtml_localstack.testing import wait_for

WAIT_S = 60.0


def _wait_for(what: str, check: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
    return wait_for(what, check, timeout_s, interval_s=0.2)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[PlatformPaths]:
    paths = PlatformPaths(tmp_path / "state")
    web_port, supervisor_port = free_ports(2)
    services = [
        ServiceSpec("web", "http.server", {}, "alive",
                    args=[str(web_port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]),
        ServiceSpec("broken", "rtml_no_such_module", {}, "alive"),
    ]
    ports = PlatformPorts(api=0, registry=0, auditor=0, supervisor_metrics=supervisor_port,
                          metrics={})
    spec = PlatformSpec(str(paths.state_dir), ports, services)
    spec.save(paths.spec)
    identity = _launch_supervisor(paths)
    spec.supervisor = {"pid": identity.pid, "start_marker": identity.start_marker,
                       "program": identity.program}
    spec.save(paths.spec)
    yield paths
    down(paths.state_dir, timeout_s=30)


def _status(paths: PlatformPaths) -> dict[str, Any]:
    status = read_status(paths.status)
    assert status is not None
    return status


def _service(paths: PlatformPaths, name: str) -> dict[str, Any]:
    """The service's record, or {} before the supervisor wrote its first status."""
    status = read_status(paths.status)
    return dict(status["services"][name]) if status else {}


def test_supervisor_restarts_what_dies_and_down_leaves_nothing(platform: PlatformPaths) -> None:
    paths = platform
    # The broken service never gets healthy: `up`'s wait fails, quoting its log.
    with pytest.raises(PlatformError) as failure:
        wait_healthy(paths, timeout_s=8)
    message = str(failure.value)
    assert "--- broken:" in message and "No module named rtml_no_such_module" in message
    assert "--- web:" not in message

    web = _wait_for("web healthy", lambda: (
        (s := _service(paths, "web")).get("healthy") and s))
    broken = _wait_for("two restarts of broken", lambda: (
        (s := _service(paths, "broken")).get("restarts", 0) >= 2 and s))
    assert broken["healthy"] is False
    assert broken["last_exit"] == 1
    assert web["restarts"] == 0 and pid_alive(web["pid"])
    log = Path(broken["log"]).read_text()
    assert "supervisor: exited with code 1; restart in" in log

    supervisor = _status(paths)["supervisor"]
    text = httpx.get(f"http://127.0.0.1:{supervisor['metrics_port']}/metrics", timeout=5).text
    restarts = re.search(r'^rtml_platform_service_restarts_total\{service="broken"\} (\S+)$',
                         text, re.M)
    assert restarts is not None and float(restarts.group(1)) >= 2
    assert 'rtml_platform_service_up{service="web"} 1.0' in text
    assert 'rtml_platform_service_up{service="broken"} 0.0' in text
    assert 'rtml_platform_service_restarts_total{service="web"} 0.0' in text

    pids = [supervisor["pid"], web["pid"]]
    notes = down(paths.state_dir, timeout_s=30)
    assert any("supervisor" in note and "stopped" in note for note in notes), notes
    for pid in pids:
        assert not pid_alive(pid), f"pid {pid} survived `down`"
        assert not group_alive(pid), f"process group {pid} survived `down`"
    assert not paths.status.exists() and not paths.spec.exists()
    supervisor_log = paths.supervisor_log.read_text()
    assert "restarting broken" in supervisor_log and "all services stopped" in supervisor_log


def test_a_taken_api_port_is_refused_with_its_owner() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(PlatformError, match=f"port {port} for the decision API is taken"):
            _choose_ports(port)


def test_down_without_a_platform_says_so(tmp_path: Path) -> None:
    assert down(tmp_path) == [f"nothing running in {tmp_path.resolve()}"]


def test_spec_json_is_what_the_supervisor_reads(platform: PlatformPaths) -> None:
    """The supervisor runs the services of the spec, with the ports it names."""
    status = _wait_for("a status file", lambda: read_status(platform.status))
    spec = json.loads(platform.spec.read_text())
    assert set(status["services"]) == {s["name"] for s in spec["services"]}
    assert status["supervisor"]["metrics_port"] == spec["ports"]["supervisor_metrics"]


def test_children_die_with_a_killed_supervisor_and_down_cleans_up(
        platform: PlatformPaths) -> None:
    """SIGKILL gives the supervisor no chance to stop its children: the parent-death
    signal does, and ``status``/``down`` then see a platform that is down."""
    web = _wait_for("web healthy", lambda: (
        (s := _service(platform, "web")).get("healthy") and s))
    supervisor = _status(platform)["supervisor"]["pid"]
    os.kill(supervisor, signal.SIGKILL)
    _wait_for("the web child to exit after its supervisor", lambda: not pid_alive(web["pid"]),
              timeout_s=15)
    _, alive, rows = service_rows(platform)
    assert not alive
    assert {row.name: row.state for row in rows}["web"] == "down"
    notes = down(platform.state_dir, timeout_s=10)
    assert any("supervisor" in note for note in notes), notes
    assert not platform.status.exists()
    assert not group_alive(web["pid"])


@pytest.mark.integration
def test_down_stops_only_the_stack_components_up_started(tmp_path: Path) -> None:
    """A spec saying `up` started redis (kafka was already running): ``down`` stops
    redis and leaves kafka to whoever started it."""
    state = tmp_path / "state"
    stack = Stack(state, die_with_parent=True)
    try:
        results = stack.up(build_launchers(["kafka", "redis"],
                                           dict(zip(["kafka", "redis"], free_ports(2),
                                                    strict=True))))
        assert all(r.ok for r in results), [r.detail for r in results]
        ports = PlatformPorts(api=0, registry=0, auditor=0, supervisor_metrics=0, metrics={})
        PlatformSpec(str(state), ports, stack_started=["redis"]).save(
            PlatformPaths(state).spec)
        notes = down(state, timeout_s=10)
        assert any(note.startswith("stack redis") for note in notes), notes
        assert set(Stack(state).launchers()) == {"kafka"}
    finally:
        stack.down()
