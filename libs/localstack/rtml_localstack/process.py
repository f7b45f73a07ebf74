"""Start detached server processes and stop exactly those again.

Each server runs in its own session (``start_new_session``) so it survives
the CLI that started it, ignores the terminal's Ctrl-C, and can be stopped
together with its children (MLflow forks a uvicorn worker) by signalling the
process group.

A pid alone is not proof of identity: after a reboot or a long time the
number may belong to someone else's process. So a started process is
recorded as a :class:`ProcessIdentity` (pid, a start-time marker and the
program name) and :func:`stop` signals only a process that still matches it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Popen objects of children started by this Python process, so they can be
# reaped (no zombies in a long pytest session) and don't trigger
# "subprocess still running" ResourceWarnings when garbage-collected.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ProcessIdentity:
    """What identifies a started process beyond its pid."""

    pid: int
    #: Opaque start-time marker (boot id + start ticks on Linux), "" if unknown.
    start_marker: str
    #: Base name of the program as started (``argv[0]``).
    program: str


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses.
    return raw[raw.rfind(")") + 2 :].split()


def start_marker(pid: int) -> str:
    """A value that changes when ``pid`` is reused by another process.

    On Linux: boot id plus the process start time in clock ticks since boot.
    Elsewhere: the start time ``ps`` reports. "" when the process is gone.
    """
    if Path("/proc").is_dir():
        fields = _proc_stat(pid)
        # After the name: state is index 0, starttime (field 22) is index 19.
        return f"{_boot_id()}:{fields[19]}" if fields else ""
    try:
        out = subprocess.run(
            ["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return ""
    return out.strip()


def cmdline(pid: int) -> list[str]:
    """The argument vector of ``pid`` ([] if unknown or gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def program_of(pid: int) -> str:
    """Base name of the program ``pid`` runs now ("" if unknown).

    Read once a server is healthy, so a launcher script that ``exec``s the
    real server is recorded as the server (redis-server's retitled argv,
    "redis-server 127.0.0.1:6379", gives "redis-server").
    """
    argv = cmdline(pid)
    return Path(argv[0].split(" ", 1)[0]).name if argv else ""


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    _reap(pid)
    if Path("/proc").is_dir():
        fields = _proc_stat(pid)
        return fields is not None and fields[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def matches(identity: ProcessIdentity) -> bool:
    """Whether ``identity.pid`` is still the process that was started.

    Compares the start-time marker, and the program name against the first
    two arguments of the live command line (a ``#!`` script such as
    ``s3rver`` runs as ``node .../s3rver``).
    """
    if not pid_alive(identity.pid):
        return False
    if identity.start_marker and start_marker(identity.pid) != identity.start_marker:
        return False
    argv = cmdline(identity.pid)
    if argv and identity.program:
        # Servers may retitle themselves: redis-server's argv becomes the one
        # string "/usr/bin/redis-server 127.0.0.1:6379".
        names = {Path(arg).name for arg in argv[:2]}
        names |= {Path(arg.split(" ", 1)[0]).name for arg in argv[:2]}
        return identity.program in names
    return True


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec hook asking Linux to SIGTERM the child when its parent dies.

    Used for servers started by test fixtures: if pytest is killed outright
    (no teardown), its servers don't live on as orphans. Linux delivers the
    signal when the *thread* that spawned the child exits, so only use it
    from a long-lived thread (pytest's main thread). None where prctl is
    unavailable (non-Linux).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return hook


def spawn(
    command: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    die_with_parent: bool = False,
) -> ProcessIdentity:
    """Start ``command`` detached, stdout and stderr appended to ``log_path``.

    ``env`` is added to the current environment. Returns at once; waiting
    for readiness is the caller's job (see :mod:`rtml_localstack.health`).
    ``die_with_parent`` ties the server's life to this process (tests); the
    CLI leaves it off so servers outlive ``rtml stack up``.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    with log_path.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
            close_fds=True,
            preexec_fn=_die_with_parent() if die_with_parent else None,
        )
    _CHILDREN[proc.pid] = proc
    return ProcessIdentity(
        pid=proc.pid, start_marker=start_marker(proc.pid), program=Path(command[0]).name
    )


def exit_code(pid: int) -> int | None:
    """Exit code of a child of this process that has ended, else None."""
    proc = _CHILDREN.get(pid)
    return proc.poll() if proc else None


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None:
        proc.poll()


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is in group ``pgid``.

    Zombies don't count: a stopped server whose parent (init, once the CLI
    that started it exited) has not reaped it yet is gone for our purposes.
    Some container inits reap only every second or so.
    """
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if entry.name.isdigit():
                fields = _proc_stat(int(entry.name))
                if fields and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                    return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop(identity: ProcessIdentity, timeout_s: float = 10.0) -> str:
    """Stop the process group led by ``identity``: SIGTERM, then SIGKILL.

    Signals nothing if the pid now belongs to another process. If the leader
    already exited but members of its group live on (a worker), those are
    stopped: a process group id cannot be reused while any member exists, so
    they are still ours. Returns what happened, for the user.
    """
    pid = identity.pid
    if pid_alive(pid) and not matches(identity):
        _CHILDREN.pop(pid, None)
        return "not ours any more (pid reused); left alone"
    if not pid_alive(pid) and not group_alive(pid):
        _forget(pid)
        return "was not running"
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid) and not group_alive(pid):
            _forget(pid)
            return "stopped"
        time.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and (pid_alive(pid) or group_alive(pid)):
        time.sleep(0.05)
    _forget(pid)
    return f"killed (no exit {timeout_s:g} s after SIGTERM)"


def kill(identity: ProcessIdentity) -> None:
    """SIGKILL the group at once (tests of crash recovery), if still ours."""
    if matches(identity):
        _signal_group(identity.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and (
            pid_alive(identity.pid) or group_alive(identity.pid)
        ):
            time.sleep(0.02)
        _forget(identity.pid)


def _forget(pid: int) -> None:
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file ("" if it does not exist)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


__all__ = [
    "ProcessIdentity",
    "cmdline",
    "exit_code",
    "kill",
    "matches",
    "pid_alive",
    "program_of",
    "spawn",
    "start_marker",
    "stop",
    "tail",
]

if sys.platform == "win32":  # pragma: no cover - the stack targets Linux/macOS
    raise ImportError("rtml_localstack needs a POSIX system (process groups, signals)")
