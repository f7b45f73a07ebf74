"""Orchestrate the local stack: up, down, status and client environment.

The orchestrator is generic: it drives :class:`ComponentLauncher` objects and
records what it started in the state directory's ``stack.json``. ``up`` spawns
every selected server first and then waits for each to become healthy, so
slow starters (MLflow ~4 s, the Cassandra JVM ~1.5 s) overlap. It is
idempotent: a component already running (same state dir, identity verified)
is health-checked and left alone. A port taken by a process the stack did not
start is reported with its owner instead of launching a server that would
die on bind. ``down`` stops only processes recorded in the state file, and
only if they are still the same processes.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from rtml_localstack.errors import ComponentUnavailable, StackError
from rtml_localstack.health import probe, wait_healthy
from rtml_localstack.launchers import COMPONENTS, LAUNCHERS, START_ORDER, ComponentLauncher
from rtml_localstack.ports import LOCALHOST, port_in_use, port_owner
from rtml_localstack.process import matches, program_of, spawn, stop
from rtml_localstack.state import (
    ComponentRecord,
    StackState,
    default_state_dir,
    locked,
    now_iso,
)

Outcome = Literal["started", "running", "skipped", "failed", "stopped"]


@dataclass
class ComponentResult:
    """What ``up``/``down`` did with one component (for display and checks)."""

    name: str
    outcome: Outcome
    address: str = ""
    pid: int | None = None
    seconds: float | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome != "failed"


@dataclass
class ComponentStatus:
    """One row of ``status``."""

    name: str
    pid: int
    address: str
    alive: bool
    healthy: bool
    uptime_s: float
    log: str
    detail: str = ""


def select_components(
    only: Iterable[str] | None = None, without: Iterable[str] | None = None
) -> list[str]:
    """Selected component names in start order; unknown names are an error."""
    only_set = {n.strip() for n in only or () if n.strip()}
    without_set = {n.strip() for n in without or () if n.strip()}
    unknown = (only_set | without_set) - set(COMPONENTS)
    if unknown:
        raise StackError(
            f"unknown component(s): {', '.join(sorted(unknown))}; known: {', '.join(COMPONENTS)}"
        )
    chosen = [c for c in COMPONENTS if (not only_set or c in only_set)]
    return [c for c in chosen if c not in without_set]


def build_launchers(
    names: Sequence[str],
    ports: Mapping[str, int | None] | None = None,
    host: str = LOCALHOST,
    options: Mapping[str, Mapping[str, object]] | None = None,
) -> list[ComponentLauncher]:
    """Launchers for ``names`` with ports (None = default) and per-component options."""
    launchers = []
    for name in names:
        cls = LAUNCHERS[name]
        kwargs = dict((options or {}).get(name, {}))
        launchers.append(cls(port=(ports or {}).get(name), host=host, **kwargs))
    return launchers


def launcher_from_record(name: str, record: ComponentRecord) -> ComponentLauncher:
    """Rebuild the launcher a state-file record was started with (for probes, env)."""
    cls = LAUNCHERS[name]
    accepted = set(inspect.signature(cls.__init__).parameters)
    kwargs = {k: v for k, v in record.options.items() if k in accepted}
    return cls(port=record.port, host=record.host, **kwargs)


def _order_key(name: str) -> int:
    return START_ORDER.index(name) if name in START_ORDER else len(START_ORDER)


def _differences(launcher: ComponentLauncher, record: ComponentRecord) -> list[str]:
    """How a running component's settings differ from the requested ones."""
    found = []
    if (record.host, record.port) != (launcher.host, launcher.port):
        found.append(f"address {record.host}:{record.port} (asked: {launcher.address})")
    durable = record.options.get("durable")
    if durable is not None and durable != launcher.options().get("durable"):
        found.append("durable storage" if durable else "memory storage")
    return found


@dataclass
class _Pending:
    launcher: ComponentLauncher
    record: ComponentRecord
    was_running: bool
    detail: str = ""
    #: time.monotonic() at spawn, so startup_s includes time spent waiting
    #: on other components (all are spawned before any is waited for).
    spawned_at: float = 0.0


class Stack:
    """The servers of one state directory.

    ``timeout_s`` overrides every component's start timeout (None keeps each
    launcher's own). ``on_result`` is called as each component's outcome is
    known, so a CLI can print progress while slower servers still start.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        timeout_s: float | None = None,
        on_result: Callable[[ComponentResult], None] | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.timeout_s = timeout_s
        self.on_result = on_result
        #: Servers get SIGTERM when this Python process dies (test fixtures).
        self.die_with_parent = die_with_parent

    # -- up ------------------------------------------------------------------

    def up(
        self, launchers: Sequence[ComponentLauncher], explicit: Iterable[str] = ()
    ) -> list[ComponentResult]:
        """Start what isn't running, wait for health, bootstrap; never raises per component.

        Optional components (Prometheus) whose binary is missing are skipped
        unless named in ``explicit``. Check ``ComponentResult.ok``.
        """
        explicit_set = set(explicit)
        results: dict[str, ComponentResult] = {}
        pending: dict[str, _Pending] = {}
        with locked(self.state_dir):
            state = StackState.load(self.state_dir)
            for launcher in self._expand(launchers, state):
                failed_dep = self._finish_requirements(launcher, pending, results, state)
                if failed_dep:
                    self._report(results, ComponentResult(
                        launcher.name, "failed", launcher.address,
                        detail=f"needs {failed_dep}, which failed",
                    ))  # fmt: skip
                    continue
                result = self._start(launcher, state, explicit_set, pending)
                if result is not None:
                    self._report(results, result)
            # Quick starters first, so each one's startup_s is its own and
            # not the time spent waiting for MLflow.
            for name in sorted(pending, key=lambda n: pending[n].launcher.start_timeout_s):
                self._finish(name, pending, results, state)
        return [results[name] for name in sorted(results, key=_order_key)]

    def _expand(
        self, launchers: Sequence[ComponentLauncher], state: StackState
    ) -> list[ComponentLauncher]:
        """Add requirements (the durable broker's S3) and sort into start order."""
        by_name: dict[str, ComponentLauncher] = {}
        for launcher in launchers:
            record = state.components.get(launcher.name)
            already = record is not None and matches(record.identity)
            if not already:
                for dep in launcher.requires():
                    by_name.setdefault(dep.name, dep)
            by_name[launcher.name] = launcher
        return [by_name[n] for n in sorted(by_name, key=_order_key)]

    def _finish_requirements(
        self,
        launcher: ComponentLauncher,
        pending: dict[str, _Pending],
        results: dict[str, ComponentResult],
        state: StackState,
    ) -> str | None:
        for dep in launcher.requires():
            if dep.name in pending:
                self._finish(dep.name, pending, results, state)
            dep_result = results.get(dep.name)
            if dep_result is not None and not dep_result.ok:
                return dep.name
        return None

    def _start(
        self,
        launcher: ComponentLauncher,
        state: StackState,
        explicit: set[str],
        pending: dict[str, _Pending],
    ) -> ComponentResult | None:
        """Spawn ``launcher`` (or adopt the running one); a result only if done already."""
        name = launcher.name
        record = state.components.get(name)
        if record is not None:
            if matches(record.identity):
                detail = ""
                differences = _differences(launcher, record)
                if differences:
                    launcher = launcher_from_record(name, record)
                    detail = (
                        f"already running with {', '.join(differences)}; "
                        "`down` it first to change that"
                    )
                pending[name] = _Pending(launcher, record, was_running=True, detail=detail)
                return None
            del state.components[name]  # stale: died or pid reused
            state.save()
        problem = launcher.unavailable()
        if problem:
            if launcher.optional and name not in explicit:
                return ComponentResult(name, "skipped", launcher.address, detail=problem)
            return ComponentResult(name, "failed", launcher.address, detail=problem)
        if port_in_use(launcher.port, launcher.host):
            owner = port_owner(launcher.port)
            return ComponentResult(
                name, "failed", launcher.address,
                detail=f"port {launcher.port} is taken by {owner or 'another process'}, which this "
                f"stack ({self.state_dir}) did not start; stop it or pick another port "
                f"(--{name}-port)",
            )  # fmt: skip
        try:
            launcher.prepare(self.state_dir)
            command = launcher.command(self.state_dir)
        except ComponentUnavailable as exc:
            return ComponentResult(name, "failed", launcher.address, detail=str(exc))
        except Exception as exc:  # a broken download or config dir: report, go on with the rest
            detail = f"preparing failed: {type(exc).__name__}: {exc}"
            return ComponentResult(name, "failed", launcher.address, detail=detail)
        log = launcher.log_path(self.state_dir)
        workdir = launcher.workdir(self.state_dir)
        workdir.mkdir(parents=True, exist_ok=True)
        identity = spawn(
            command,
            log,
            env=launcher.env(self.state_dir),
            cwd=workdir,
            die_with_parent=self.die_with_parent,
        )
        record = ComponentRecord(
            pid=identity.pid,
            port=launcher.port,
            host=launcher.host,
            started_at=now_iso(),
            command=command,
            log=str(log),
            start_marker=identity.start_marker,
            program=identity.program,
            options=launcher.options(),
        )
        state.components[name] = record
        state.save()  # before waiting: an interrupted `up` can still be `down`ed
        pending[name] = _Pending(launcher, record, was_running=False, spawned_at=time.monotonic())
        return None

    def _finish(
        self,
        name: str,
        pending: dict[str, _Pending],
        results: dict[str, ComponentResult],
        state: StackState,
    ) -> None:
        """Wait for health, then bootstrap; stop a fresh process that never got healthy."""
        item = pending.pop(name)
        launcher, record = item.launcher, item.record
        timeout = self.timeout_s if self.timeout_s is not None else launcher.start_timeout_s
        try:
            wait_healthy(launcher, record.identity, self.state_dir, timeout)
        except StackError as exc:
            if not item.was_running:
                # Spawned by this very call: the start marker alone identifies
                # it (its program may not have exec'd into the server yet).
                stop(replace(record.identity, program=""), timeout_s=5.0)
                state.components.pop(name, None)
                state.save()
            self._report(results, ComponentResult(
                name, "failed", launcher.address, record.pid, detail=str(exc)
            ))  # fmt: skip
            return
        if not item.was_running:
            record.startup_s = round(time.monotonic() - item.spawned_at, 3)
            record.program = program_of(record.pid) or record.program
            state.save()
        try:
            notes = launcher.bootstrap(self.state_dir)
        except Exception as exc:  # any client error: report, keep the server running
            self._report(results, ComponentResult(
                name, "failed", launcher.address, record.pid,
                detail=f"running, but set-up failed: {type(exc).__name__}: {exc}",
            ))  # fmt: skip
            return
        detail = "; ".join(filter(None, [item.detail, *notes]))
        self._report(results, ComponentResult(
            name, "running" if item.was_running else "started", launcher.address, record.pid,
            seconds=None if item.was_running else record.startup_s, detail=detail,
        ))  # fmt: skip

    def _report(self, results: dict[str, ComponentResult], result: ComponentResult) -> None:
        results[result.name] = result
        if self.on_result is not None:
            self.on_result(result)

    # -- down ----------------------------------------------------------------

    def down(
        self, names: Iterable[str] | None = None, timeout_s: float = 15.0
    ) -> list[ComponentResult]:
        """Stop recorded components (all by default), dependants first.

        Each process group gets SIGTERM, then SIGKILL after ``timeout_s``.
        Data directories stay (Cassandra, MLflow and durable Kafka keep data).
        """
        results = []
        with locked(self.state_dir):
            state = StackState.load(self.state_dir)
            wanted = set(names) if names is not None else set(state.components)
            for name in sorted(wanted & set(state.components), key=_order_key, reverse=True):
                record = state.components[name]
                launcher = launcher_from_record(name, record)
                outcome = stop(record.identity, timeout_s=min(timeout_s, launcher.stop_timeout_s))
                del state.components[name]
                state.save()
                result = ComponentResult(
                    name, "stopped", f"{record.host}:{record.port}", record.pid, detail=outcome
                )
                results.append(result)
                if self.on_result is not None:
                    self.on_result(result)
        return results

    # -- status / env --------------------------------------------------------

    def status(self, probe_timeout_s: float = 1.0) -> list[ComponentStatus]:
        """Each recorded component: alive (identity verified), healthy, uptime."""
        state = StackState.load(self.state_dir)
        rows = []
        for name in sorted(state.components, key=_order_key):
            record = state.components[name]
            alive = matches(record.identity)
            detail = ""
            healthy = False
            if alive and name in LAUNCHERS:
                problem = probe(launcher_from_record(name, record), probe_timeout_s)
                healthy = problem is None
                detail = problem or ""
            elif not alive:
                detail = "not running (stale entry; `up` restarts it, `down` clears it)"
            rows.append(ComponentStatus(
                name, record.pid, f"{record.host}:{record.port}", alive, healthy,
                record.uptime_s(), record.log, detail,
            ))  # fmt: skip
        return rows

    def launchers(self) -> dict[str, ComponentLauncher]:
        """Launchers of the recorded components that are alive."""
        state = StackState.load(self.state_dir)
        return {
            name: launcher_from_record(name, record)
            for name, record in sorted(state.components.items(), key=lambda kv: _order_key(kv[0]))
            if name in LAUNCHERS and matches(record.identity)
        }

    def client_env(self) -> dict[str, str]:
        """Environment variables for services, from the running components."""
        env: dict[str, str] = {}
        for launcher in self.launchers().values():
            env.update(launcher.client_env())
        return env
