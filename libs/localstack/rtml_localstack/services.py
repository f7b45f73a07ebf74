"""Run one of the project's own services (``python -m rtml_<service>``) as a child process.

The stack's servers (broker, Redis, MLflow, ...) are detached and outlive the
CLI; the project's services started by a demo, a test or a benchmark are the
opposite: children tied to the run, with their output in a log file the
caller can point a person at when something goes wrong. Stopping sends
SIGTERM first, because every service commits its Kafka offsets and flushes
its outputs on SIGTERM (a SIGKILL would replay input on the next run).

>>> service = ServiceProcess("rtml_scorer", Path("/tmp/scorer.log"), {"RTML_X": "1"})
>>> service.command[-2:]
['-m', 'rtml_scorer']
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx

from rtml_localstack.process import tail


class ServiceFailed(RuntimeError):
    """The service exited, or did not become ready in time; the message quotes its log."""


class ServiceProcess:
    """One service as a child process; see the module doc."""

    def __init__(self, module: str, log_path: Path, env: Mapping[str, str] | None = None,
                 python: str = sys.executable) -> None:
        self.module = module
        self.log_path = log_path
        self.env = dict(env or {})
        self.command = [python, "-m", module]
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> ServiceProcess:
        """Start it (stdout and stderr appended to the log); returns at once."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} "
                        f"{' '.join(self.command)}\n".encode())
        self._log.flush()
        self.process = subprocess.Popen(self.command, env={**os.environ, **self.env},
                                        stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        """Raise :class:`ServiceFailed` (with the log's tail) if the process has exited."""
        if self.process is None:
            raise ServiceFailed(f"{self.module} was never started")
        code = self.process.poll()
        if code is not None:
            raise ServiceFailed(f"{self.module} exited with code {code}; "
                                f"log {self.log_path}:\n{tail(self.log_path)}")

    def wait_http(self, url: str, timeout_s: float = 60.0) -> None:
        """Wait until ``url`` answers 200 (e.g. the service's ``/healthz``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise ServiceFailed(f"{self.module} did not answer {url} within {timeout_s:.0f} s; "
                            f"log {self.log_path}:\n{tail(self.log_path)}")

    def wait_log(self, pattern: str, timeout_s: float = 60.0) -> str:
        """Wait until a line of this run's log matches ``pattern`` (regex); return the line."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            text = self.log_path.read_text(errors="replace")
            run = text.rsplit("\n=== ", 1)[-1]
            for line in run.splitlines():
                if regex.search(line):
                    return line
            time.sleep(0.2)
        raise ServiceFailed(f"{self.module}: no log line matching {pattern!r} within "
                            f"{timeout_s:.0f} s; log {self.log_path}:\n{tail(self.log_path)}")

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; returns the exit code."""
        code: int | None = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            code = self.process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
