"""The supervisor: runs every service of the spec as a child, restarts what dies.

One detached process (``python -m rtml_cli.platform``, started by ``rtml up``)
owns the services, so they outlive the ``up`` command, and a crash of one is
noticed and repaired without anyone watching. Each child runs in its own
process group (so stopping it also stops anything it forked, such as the
registry's gate worker) with the parent-death signal set: if the supervisor
itself is killed outright, its children get SIGTERM instead of living on as
orphans nobody records.

Every tick (0.5 s) it reaps children that exited and schedules their restart
(:class:`~rtml_cli.platform.backoff.RestartTracker`); children being started
are probed every tick, running ones every ``probe_interval_s``. What it knows
goes to ``platform.json`` (atomically, whenever something changed) and to its
Prometheus endpoint: ``rtml_platform_service_up{service}`` and
``rtml_platform_service_restarts_total{service}`` (``rtml top`` reads these
names). SIGTERM stops the children tier by tier, upstream first
(:data:`~rtml_cli.platform.catalog.STOP_TIERS`): SIGTERM, then SIGKILL after
``stop_timeout_s``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from rtml_cli.platform.backoff import BackoffPolicy, RestartTracker
from rtml_cli.platform.catalog import STOP_TIERS, SUPERVISOR_JOB, ServiceSpec, scrape_jobs
from rtml_cli.platform.files import PlatformPaths, PlatformSpec, now_iso, write_status
from rtml_localstack.launchers.prometheus import remove_targets, write_targets
from rtml_localstack.process import (
    ProcessIdentity,
    exit_code,
    pid_alive,
    program_of,
    spawn,
    start_marker,
    stop,
)

logger = logging.getLogger("rtml.platform")

STATUS_VERSION = 1
#: Consecutive failed probes after which a healthy service counts as unhealthy
#: (a busy 2-core laptop may miss one 1-second probe).
UNHEALTHY_AFTER = 3
#: A child with no health endpoint counts as healthy once it has stayed up this long
#: (a bad option makes it exit within a second or two).
ALIVE_GRACE_S = 3.0


@dataclass
class Child:
    """One service and what the supervisor knows about its current process."""

    spec: ServiceSpec
    log: Path
    tracker: RestartTracker
    identity: ProcessIdentity | None = None
    #: starting | healthy | unhealthy | backoff | stopped
    state: str = "starting"
    restarts: int = 0
    started_at: str | None = None
    last_exit: int | None = None
    detail: str = ""
    probe_failures: int = 0
    #: Monotonic time of the next start (when in backoff) and of the next probe.
    next_start: float = 0.0
    next_probe: float = 0.0
    spawned_at: float = 0.0
    ever_started: bool = False

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"

    def record(self) -> dict[str, Any]:
        identity = self.identity
        return {"state": self.state, "healthy": self.healthy,
                "pid": identity.pid if identity else None,
                "start_marker": identity.start_marker if identity else "",
                "program": identity.program if identity else "",
                "port": self.spec.port, "metrics_port": self.spec.metrics_port,
                "job": self.spec.job, "health_url": self.spec.health_url,
                "restarts": self.restarts, "started_at": self.started_at,
                "last_exit": self.last_exit, "detail": self.detail, "log": str(self.log)}


@dataclass
class SupervisorMetrics:
    """The supervisor's own Prometheus endpoint (a registry of its own, not the global one)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.up = Gauge("rtml_platform_service_up", "1 when the service is healthy, else 0",
                        ["service"], registry=self.registry)
        self.restarts = Counter("rtml_platform_service_restarts_total",
                                "Restarts of the service by the supervisor", ["service"],
                                registry=self.registry)

    def declare(self, service: str) -> None:
        """Export both series at 0 from the start (a restart count absent until the first
        restart would read as "unknown", not "none")."""
        self.up.labels(service=service).set(0)
        self.restarts.labels(service=service)

    def serve(self, port: int) -> None:
        start_http_server(port, addr="127.0.0.1", registry=self.registry)


def probe(url: str, timeout_s: float = 1.0) -> str | None:
    """None when ``url`` answers 200, else why not."""
    try:
        response = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return f"GET {url}: {type(exc).__name__}"
    return None if response.status_code == 200 else f"GET {url}: HTTP {response.status_code}"


class Supervisor:
    """Runs a :class:`PlatformSpec`; :meth:`run` blocks until :meth:`request_stop`."""

    def __init__(self, spec: PlatformSpec, paths: PlatformPaths,
                 policy: BackoffPolicy | None = None, tick_s: float = 0.5,
                 probe_interval_s: float = 2.0, stop_timeout_s: float = 15.0) -> None:
        self.spec = spec
        self.paths = paths
        self.policy = policy or BackoffPolicy()
        self.tick_s = tick_s
        self.probe_interval_s = probe_interval_s
        self.stop_timeout_s = stop_timeout_s
        self.children = {s.name: Child(s, paths.log(s.name), RestartTracker(self.policy))
                         for s in spec.services}
        self.metrics = SupervisorMetrics()
        self.started_at = now_iso()
        self.state = "running"
        self._stop = threading.Event()
        self._probes = ThreadPoolExecutor(max_workers=4, thread_name_prefix="probe")
        self._last_written: dict[str, Any] | None = None

    # -- life cycle -------------------------------------------------------------

    def request_stop(self, *_: object) -> None:
        """Ask :meth:`run` to stop the children and return (signal-handler safe)."""
        self._stop.set()

    def run(self) -> None:
        """Start everything, supervise until asked to stop, then stop the children."""
        self.metrics.serve(self.spec.ports.supervisor_metrics)
        for name in self.children:
            self.metrics.declare(name)
        self._register_targets()
        self._write(force=True)
        try:
            while not self._stop.is_set():
                self.tick(time.monotonic())
                self._write()
                self._stop.wait(self.tick_s)
        finally:
            self.shutdown()

    def tick(self, now: float) -> None:
        """Reap, restart and probe once."""
        for child in self.children.values():
            if child.identity is not None and not pid_alive(child.identity.pid):
                self._on_exit(child, now)
            if child.identity is None and child.state != "stopped" and now >= child.next_start:
                self._start(child, now)
        due = [c for c in self.children.values()
               if c.identity is not None and (c.state == "starting" or now >= c.next_probe)]
        for child, problem in zip(due, self._probes.map(self._probe, due), strict=True):
            self._on_probe(child, problem, now)

    def shutdown(self) -> None:
        """Stop the children, upstream first; a tier's services stop together."""
        self.state = "stopping"
        self._write(force=True)
        ordered = [name for tier in STOP_TIERS for name in tier]
        tiers = [list(tier) for tier in STOP_TIERS]
        tiers.append([n for n in self.children if n not in ordered])
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="stop") as pool:
            for tier in tiers:
                members = [self.children[n] for n in tier if n in self.children]
                list(pool.map(self._stop_child, members))
                self._write(force=True)
        self._probes.shutdown(wait=False)
        self._remove_targets()
        self.state = "stopped"
        self._write(force=True)
        logger.info("all services stopped")

    # -- one child --------------------------------------------------------------

    def _start(self, child: Child, now: float) -> None:
        if child.ever_started:
            child.restarts += 1
            self.metrics.restarts.labels(service=child.spec.name).inc()
            logger.info("restarting %s (restart #%d)", child.spec.name, child.restarts)
        cwd = self.paths.root
        cwd.mkdir(parents=True, exist_ok=True)
        child.identity = spawn(child.spec.command, child.log, env=child.spec.env, cwd=cwd,
                               die_with_parent=True)
        child.ever_started = True
        child.state = "starting"
        child.detail = ""
        child.probe_failures = 0
        child.started_at = now_iso()
        child.next_probe = now
        child.spawned_at = now
        logger.info("started %s, pid %d", child.spec.name, child.identity.pid)

    def _on_exit(self, child: Child, now: float) -> None:
        assert child.identity is not None
        code = exit_code(child.identity.pid)
        # Also stops what the child left behind in its process group (a forked worker).
        stop(child.identity, timeout_s=2.0)
        child.identity = None
        child.last_exit = code
        child.next_start = child.tracker.on_exit(now)
        delay = child.next_start - now
        child.state = "backoff"
        child.detail = f"exited with code {code}; restart in {delay:.0f} s"
        self.metrics.up.labels(service=child.spec.name).set(0)
        logger.warning("%s exited with code %s; restart in %.0f s (log %s)",
                       child.spec.name, code, delay, child.log)
        with child.log.open("a") as log:
            log.write(f"--- {now_iso()} supervisor: exited with code {code}; "
                      f"restart in {delay:.0f} s\n")

    def _probe(self, child: Child) -> str | None:
        url = child.spec.health_url
        if url is None:  # liveness only: the reaping in tick() covers the rest
            up_s = time.monotonic() - child.spawned_at
            return None if up_s >= ALIVE_GRACE_S else f"up for {up_s:.0f} s only"
        return probe(url)

    def _on_probe(self, child: Child, problem: str | None, now: float) -> None:
        child.next_probe = now + self.probe_interval_s
        if child.identity is None:
            return
        if problem is None:
            if child.state != "healthy":
                logger.info("%s is healthy", child.spec.name)
                # The exec'd program, as `status` and `down` verify it later.
                program = program_of(child.identity.pid) or child.identity.program
                child.identity = ProcessIdentity(child.identity.pid,
                                                 child.identity.start_marker, program)
            child.state = "healthy"
            child.detail = ""
            child.probe_failures = 0
            child.tracker.on_healthy(now)
            self.metrics.up.labels(service=child.spec.name).set(1)
            return
        child.probe_failures += 1
        if child.state == "healthy" and child.probe_failures >= UNHEALTHY_AFTER:
            child.state = "unhealthy"
            child.tracker.on_unhealthy()
            self.metrics.up.labels(service=child.spec.name).set(0)
            logger.warning("%s is unhealthy: %s", child.spec.name, problem)
        if child.state != "healthy":
            child.detail = problem

    def _stop_child(self, child: Child) -> None:
        if child.identity is not None:
            outcome = stop(child.identity, timeout_s=self.stop_timeout_s)
            logger.info("%s: %s", child.spec.name, outcome)
            child.last_exit = None
        child.identity = None
        child.state = "stopped"
        child.detail = ""
        self.metrics.up.labels(service=child.spec.name).set(0)

    # -- outputs ----------------------------------------------------------------

    def _register_targets(self) -> None:
        if not self.spec.prometheus:
            return
        state_dir = Path(self.spec.state_dir)
        for job, port in scrape_jobs(self.spec.services).items():
            write_targets(state_dir, job, [f"127.0.0.1:{port}"])
        supervisor = f"127.0.0.1:{self.spec.ports.supervisor_metrics}"
        write_targets(state_dir, SUPERVISOR_JOB, [supervisor])

    def _remove_targets(self) -> None:
        if not self.spec.prometheus:
            return
        state_dir = Path(self.spec.state_dir)
        for job in [*scrape_jobs(self.spec.services), SUPERVISOR_JOB]:
            remove_targets(state_dir, job)

    def status(self) -> dict[str, Any]:
        pid = os.getpid()
        return {
            "version": STATUS_VERSION,
            "supervisor": {"pid": pid, "start_marker": start_marker(pid),
                           "program": Path(sys.executable).name,
                           "metrics_port": self.spec.ports.supervisor_metrics,
                           "job": SUPERVISOR_JOB, "state": self.state,
                           "started_at": self.started_at, "log": str(self.paths.supervisor_log)},
            "api_url": f"http://127.0.0.1:{self.spec.ports.api}",
            "services": {name: child.record() for name, child in self.children.items()},
        }

    def _write(self, force: bool = False) -> None:
        current = self.status()
        if force or current != self._last_written:
            write_status(self.paths.status, {**current, "updated_at": now_iso()})
            self._last_written = current


def main(state_dir: Path) -> int:
    """Run the supervisor of ``state_dir``'s spec until SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per health probe
    paths = PlatformPaths(state_dir)
    spec = PlatformSpec.load(paths.spec)
    supervisor = Supervisor(spec, paths)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %d: stopping the services", signum)
        supervisor.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    supervisor.run()
    return 0
