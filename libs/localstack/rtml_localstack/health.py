"""Wait for a started server to become healthy, or explain why it didn't.

A server that never gets healthy is the most common local-stack problem
(port clash, missing file, JVM flags). The failure message therefore says
whether the process died (and its exit code) or just never answered, what
the last probe said, and ends with the tail of the server's log.
"""

from __future__ import annotations

import time
from pathlib import Path

from rtml_localstack.errors import NotReady, StackError
from rtml_localstack.launchers.base import ComponentLauncher
from rtml_localstack.process import ProcessIdentity, exit_code, pid_alive, tail


def probe(launcher: ComponentLauncher, timeout_s: float = 1.0) -> str | None:
    """One health check; None when healthy, else the reason."""
    try:
        launcher.health_check(timeout_s=timeout_s)
    except NotReady as exc:
        return str(exc) or type(exc).__name__
    return None


def wait_healthy(
    launcher: ComponentLauncher,
    identity: ProcessIdentity,
    state_dir: Path | None,
    timeout_s: float,
    log_lines: int = 25,
) -> float:
    """Poll ``launcher.health_check`` until it passes; return seconds waited.

    Raises :class:`StackError` (with the log tail) when the process exits or
    ``timeout_s`` passes first. Polls quickly at first (Tansu and Redis are
    ready in milliseconds), then backs off to 0.25 s.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    delay = 0.01
    reason = "no probe yet"
    while True:
        if not pid_alive(identity.pid):
            code = exit_code(identity.pid)
            how = f"exited with code {code}" if code is not None else "exited"
            raise StackError(
                _failure(launcher, f"{how} before becoming healthy", state_dir, log_lines)
            )
        remaining = deadline - time.monotonic()
        problem = probe(launcher, timeout_s=max(0.2, min(2.0, remaining)))
        if problem is None:
            return time.monotonic() - started
        reason = problem
        if time.monotonic() >= deadline:
            message = f"not healthy after {timeout_s:g} s (last probe: {reason})"
            raise StackError(_failure(launcher, message, state_dir, log_lines))
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def _failure(
    launcher: ComponentLauncher, message: str, state_dir: Path | None, log_lines: int
) -> str:
    text = f"{launcher.name} on {launcher.address} {message}"
    if state_dir is not None:
        log = launcher.log_path(state_dir)
        log_tail = tail(log, log_lines)
        text += f"\n--- last lines of {log} ---\n{log_tail or '(empty)'}"
    return text
