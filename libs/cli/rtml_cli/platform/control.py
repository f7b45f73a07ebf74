"""What ``rtml up``, ``rtml down`` and ``rtml status`` do, without the option parsing.

``up``: the local stack (started only if it is not up, reusing
:class:`rtml_localstack.stack.Stack`), the topics, a champion
(:mod:`rtml_cli.platform.champion`), then the spec of every service
(:mod:`rtml_cli.platform.catalog`) and a detached supervisor running it; it
returns once every service is healthy, or fails quoting the log of each one
that is not. A second ``up`` while the supervisor runs changes nothing.

``down``: SIGTERM to the supervisor (which stops its children, upstream
first), SIGKILL if it does not exit in time, then a check that no recorded
process is left; the stack is stopped only if this platform's ``up`` started
it. Processes are recognised by pid *and* start-time marker
(:func:`rtml_localstack.process.matches`), so a reused pid is never signalled.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from rtml_cli.platform.catalog import (
    MODEL_NAME,
    SUPERVISOR_JOB,
    PlatformPorts,
    Secrets,
    TrafficOptions,
    build_catalog,
    metric_port_names,
)
from rtml_cli.platform.champion import ensure_champion
from rtml_cli.platform.files import (
    PlatformError,
    PlatformPaths,
    PlatformSpec,
    now_iso,
    read_status,
    uptime_s,
)
from rtml_localstack.console import make_console
from rtml_localstack.launchers import COMPONENTS
from rtml_localstack.launchers.prometheus import remove_targets
from rtml_localstack.ports import free_ports, port_in_use, port_owner
from rtml_localstack.process import ProcessIdentity, matches, pid_alive, spawn, stop, tail
from rtml_localstack.stack import ComponentResult, Stack, build_launchers
from rtml_localstack.state import locked

#: Stack components the services cannot run without (Prometheus is optional).
REQUIRED_COMPONENTS: tuple[str, ...] = ("kafka", "redis", "mlflow", "cassandra")
DEFAULT_API_PORT = 8080
DEFAULT_UP_TIMEOUT_S = 240.0
DEFAULT_DOWN_TIMEOUT_S = 120.0
LOG_TAIL_LINES = 20


@dataclass
class UpResult:
    """What ``up`` did."""

    already_running: bool
    status: dict[str, Any]
    stack_started: list[str]
    seconds: float


@dataclass
class ServiceRow:
    """One line of ``status``."""

    name: str
    state: str
    pid: int | None
    port: int | None
    metrics_port: int | None
    restarts: int
    uptime_s: float | None
    log: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "healthy"


def _identity(record: dict[str, Any] | None) -> ProcessIdentity | None:
    if not record or not record.get("pid"):
        return None
    return ProcessIdentity(int(record["pid"]), str(record.get("start_marker", "")),
                           str(record.get("program", "")))


def supervisor_identity(paths: PlatformPaths) -> ProcessIdentity | None:
    """The supervisor's identity from ``platform.json``, else from the spec ``up`` wrote."""
    status = read_status(paths.status)
    identity = _identity(status.get("supervisor") if status else None)
    if identity is None and paths.spec.exists():
        identity = _identity(PlatformSpec.load(paths.spec).supervisor)
    return identity


def supervisor_running(paths: PlatformPaths) -> bool:
    identity = supervisor_identity(paths)
    return identity is not None and matches(identity)


# -- up ---------------------------------------------------------------------------


def _start_stack(stack: Stack, console: Console) -> list[str]:
    """Start the stack unless its required components run; returns what was started."""
    running = set(stack.launchers())
    if set(REQUIRED_COMPONENTS) <= running:
        console.print(f"  stack already running in {stack.state_dir} "
                      f"({', '.join(sorted(running))})", highlight=False)
        return []

    def report(result: ComponentResult) -> None:
        when = f" in {result.seconds:.1f} s" if result.seconds is not None else ""
        console.print(f"  {result.outcome:>8} {result.name:<10} {result.address}{when}",
                      highlight=False)
        if result.detail and result.outcome in ("failed", "skipped"):
            for line in result.detail.splitlines()[-8:]:
                console.print(f"           {line}", markup=False, highlight=False)

    stack.on_result = report
    results = stack.up(build_launchers(list(COMPONENTS)))
    stack.on_result = None
    started = [r.name for r in results if r.outcome == "started"]
    failed = [r.name for r in results if not r.ok and r.name in REQUIRED_COMPONENTS]
    if failed:
        raise PlatformError(
            f"the stack did not start: {', '.join(failed)} (reasons above; logs in "
            f"{stack.state_dir / 'logs'}). `rtml stack down` stops what did start.")
    if any(not r.ok for r in results if r.name == "prometheus"):
        console.print("  note: Prometheus did not start; services run without scraping",
                      highlight=False)
    return started


def _choose_ports(api_port: int) -> PlatformPorts:
    if port_in_use(api_port):
        owner = port_owner(api_port)
        raise PlatformError(f"port {api_port} for the decision API is taken by "
                            f"{owner or 'another process'}; stop it or pass --api-port")
    names = metric_port_names()
    picked = free_ports(3 + len(names))
    return PlatformPorts(api=api_port, registry=picked[0], auditor=picked[1],
                         supervisor_metrics=picked[2], metrics=dict(zip(names, picked[3:],
                                                                        strict=True)))


def _launch_supervisor(paths: PlatformPaths) -> ProcessIdentity:
    """Start the detached supervisor (own session: it outlives this command)."""
    command = [sys.executable, "-m", "rtml_cli.platform", "--state-dir", str(paths.state_dir)]
    return spawn(command, paths.supervisor_log, cwd=paths.root)


def wait_healthy(paths: PlatformPaths, timeout_s: float,
                 on_change: Callable[[str, str], None] | None = None) -> dict[str, Any]:
    """Wait until the supervisor reports every service healthy; returns ``platform.json``."""
    deadline = time.monotonic() + timeout_s
    seen: dict[str, str] = {}
    status: dict[str, Any] | None = None
    while True:
        identity = supervisor_identity(paths)
        if identity is None or not pid_alive(identity.pid):
            raise PlatformError("the supervisor exited; its log "
                                f"{paths.supervisor_log}:\n{tail(paths.supervisor_log, 30)}")
        status = read_status(paths.status)
        services: dict[str, Any] = status["services"] if status else {}
        for name, record in services.items():
            if on_change is not None and seen.get(name) != record["state"]:
                on_change(name, record["state"])
            seen[name] = record["state"]
        if services and all(r["healthy"] for r in services.values()):
            assert status is not None
            return status
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    failing = {n: r for n, r in services.items() if not r["healthy"]} if services else {}
    parts = [f"not every service was healthy after {timeout_s:.0f} s."]
    for name, record in failing.items():
        parts.append(f"--- {name}: {record['state']} {record.get('detail', '')} "
                     f"(restarts {record['restarts']}); last lines of {record['log']}:\n"
                     f"{tail(Path(record['log']), LOG_TAIL_LINES) or '(empty)'}")
    if not services:
        parts.append(f"the supervisor wrote no status; its log {paths.supervisor_log}:\n"
                     f"{tail(paths.supervisor_log, 30)}")
    parts.append("The supervisor keeps restarting them: `rtml status` shows them, "
                 "`rtml down` stops everything.")
    raise PlatformError("\n".join(parts))


def up(state_dir: Path, api_port: int = DEFAULT_API_PORT, data_dir: Path | None = None,
       traffic: TrafficOptions | None = None, timeout_s: float = DEFAULT_UP_TIMEOUT_S,
       console: Console | None = None, model_name: str = MODEL_NAME,
       service_env: Mapping[str, str] | None = None) -> UpResult:
    """Bring the whole platform up (see the module doc); idempotent. ``service_env`` is set
    for every service (``rtml demo --feature-repo/--feature-set``: the served set)."""
    from rtml_common.kafka.admin import ensure_topics
    from rtml_common.topics import all_topic_names
    from rtml_simulator.cli import DEFAULT_DATA_DIR

    started = time.perf_counter()
    console = console or make_console()
    state_dir = state_dir.resolve()
    paths = PlatformPaths(state_dir)
    data_dir = (data_dir or DEFAULT_DATA_DIR).resolve()
    paths.root.mkdir(parents=True, exist_ok=True)
    with locked(paths.root):
        if supervisor_running(paths):
            status = read_status(paths.status) or {}
            records = (status.get("services") or {}).values()
            healthy = sum(1 for r in records if r["healthy"])
            console.print(f"the platform is already running in {state_dir} ({healthy} of "
                          f"{len(records)} services healthy); nothing changed (`rtml status` "
                          "shows it, `rtml down` stops it)", highlight=False)
            return UpResult(True, status, [], time.perf_counter() - started)
        previous = PlatformSpec.load(paths.spec) if paths.spec.exists() else None
        console.print(f"[bold]stack[/] ({state_dir})", highlight=False)
        stack = Stack(state_dir)
        stack_started = _start_stack(stack, console)
        running = set(stack.launchers())
        if previous is not None:  # an earlier `up` that did not finish started these
            stack_started = sorted({*stack_started,
                                    *(n for n in previous.stack_started if n in running)})
        client_env = stack.client_env()
        ports = _choose_ports(api_port)
        spec = PlatformSpec(str(state_dir), ports, stack_started=stack_started,
                            prometheus="prometheus" in running)
        if not spec.prometheus:
            console.print("  note: Prometheus is not running in this stack; the services "
                          "still export metrics, but nothing scrapes them", highlight=False)
        spec.save(paths.spec)  # from here on `down` knows which stack components are ours
        ensure_topics(client_env["RTML_KAFKA_BOOTSTRAP_SERVERS"], all_topic_names(),
                      replication_factor=1)
        console.print("[bold]champion[/]")
        ensure_champion(state_dir, client_env, data_dir, model_name, console)
        spec.services = build_catalog(
            ports, client_env, state_dir,
            Secrets(secrets.token_urlsafe(24), secrets.token_urlsafe(24)), traffic, model_name,
            service_env)
        spec.save(paths.spec)
        paths.status.unlink(missing_ok=True)  # a dead supervisor's file must not be read
        console.print(f"[bold]services[/] (supervisor log {paths.supervisor_log})",
                      highlight=False)
        identity = _launch_supervisor(paths)
        spec.supervisor = {"pid": identity.pid, "start_marker": identity.start_marker,
                           "program": identity.program, "started_at": now_iso()}
        spec.save(paths.spec)
        status = wait_healthy(paths, timeout_s, lambda name, state: console.print(
            f"  {name:<20} {state}", highlight=False))
    return UpResult(False, status, stack_started, time.perf_counter() - started)


# -- down -------------------------------------------------------------------------


def _stop_supervisor(identity: ProcessIdentity, timeout_s: float) -> str:
    if not matches(identity):
        return "was not running"
    os.kill(identity.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(identity.pid):
            return "stopped"
        time.sleep(0.2)
    # Its children get SIGTERM from the parent-death signal; stragglers are stopped below.
    return stop(identity, timeout_s=5.0)


def down(state_dir: Path, timeout_s: float = DEFAULT_DOWN_TIMEOUT_S,
         console: Console | None = None) -> list[str]:
    """Stop the supervisor, its services, and the stack if ``up`` started it; returns notes."""
    console = console or make_console()
    state_dir = state_dir.resolve()
    paths = PlatformPaths(state_dir)
    notes: list[str] = []
    if not paths.root.exists():
        return [f"nothing running in {state_dir}"]
    with locked(paths.root):
        spec = PlatformSpec.load(paths.spec) if paths.spec.exists() else None
        status = read_status(paths.status)
        identity = supervisor_identity(paths)
        if identity is not None:
            outcome = _stop_supervisor(identity, timeout_s)
            notes.append(f"supervisor (pid {identity.pid}): {outcome}")
        for name, record in ((status or {}).get("services") or {}).items():
            child = _identity(record)
            if child is not None and matches(child):  # only if the supervisor could not
                notes.append(f"{name} (pid {child.pid}): {stop(child, timeout_s=10.0)}")
        if spec is not None and spec.prometheus:
            for job in [*(s.job for s in spec.services if s.job), SUPERVISOR_JOB]:
                remove_targets(state_dir, job)
        if spec is not None and spec.stack_started:
            for result in Stack(state_dir).down(spec.stack_started):
                notes.append(f"stack {result.name}: {result.detail}")
        elif spec is not None:
            notes.append("the stack was running before `rtml up`: left running "
                         "(`rtml stack down` stops it)")
        paths.status.unlink(missing_ok=True)
        paths.spec.unlink(missing_ok=True)
    if not notes:
        notes.append(f"nothing running in {state_dir}")
    return notes


# -- status -----------------------------------------------------------------------


def service_rows(paths: PlatformPaths) -> tuple[dict[str, Any] | None, bool, list[ServiceRow]]:
    """(platform.json, supervisor alive, one row per service); states checked against /proc."""
    status = read_status(paths.status)
    if status is None:
        return None, False, []
    alive = supervisor_running(paths)
    rows = []
    for name, record in status["services"].items():
        identity = _identity(record)
        state = record["state"]
        if not alive:
            state = "orphaned" if identity is not None and matches(identity) else "down"
        elif identity is not None and not matches(identity) and state != "backoff":
            state = "dead"
        running = state in ("healthy", "starting", "unhealthy")
        rows.append(ServiceRow(name, state, identity.pid if identity and running else None,
                               record.get("port"), record.get("metrics_port"),
                               int(record.get("restarts", 0)),
                               uptime_s(record.get("started_at")) if running else None,
                               record["log"], record.get("detail", "")))
    return status, alive, rows
