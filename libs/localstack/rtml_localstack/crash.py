"""Kill -9 a service mid-stream, restart it, and count what it published: test helpers.

Used by the services' crash tests (``services/*/tests/test_crash_duplicates.py``)
and meant for any fault test that must show "nothing lost, nothing published
twice": a service runs as ``python -m <module>`` (as deployed, configured by
its environment), is killed with SIGKILL at a point chosen from what it has
visibly done (never after a sleep), restarted, and its output topic is then
read back to the end — the end the broker's fetch responses report, not the
ListOffsets answer the local broker gets wrong (:mod:`rtml_common.kafka.published`),
so the count is exact without waiting for silence.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from rtml_common.config import KafkaSettings
from rtml_common.kafka.published import end_offsets, read_published
from rtml_localstack.environment import without_developer_settings


class ServiceProcess:
    """One service as ``python -m module``; its output goes to a log file (pipes fill up)."""

    def __init__(self, module: str, env: Mapping[str, str], log_dir: Path) -> None:
        self.module = module
        base = without_developer_settings(os.environ)
        self.env = {**base, "RTML_TELEMETRY_LOG_JSON": "false", **env}
        self.log_path = log_dir / f"{module}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> ServiceProcess:
        assert not self.alive, f"{self.module} is already running"
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            self.proc = subprocess.Popen([sys.executable, "-m", self.module], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no flush, no commit, no checkpoint — a crash."""
        assert self.proc is not None and self.alive, f"{self.module} died early:\n{self.tail()}"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def wait_exit(self, timeout_s: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (graceful) and wait for the exit code."""
        assert self.proc is not None
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, chars: int = 4000) -> str:
        return self.log()[-chars:]

    def close(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(timeout=30)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str,
               watch: Iterable[ServiceProcess] = (), interval_s: float = 0.05) -> None:
    """Poll ``condition``; fail at once, with the log tail, if a watched service exits."""
    deadline = time.monotonic() + timeout_s
    watched = list(watch)
    while not condition():
        for service in watched:
            if service.proc is not None and not service.alive:
                raise AssertionError(f"{service.module} exited ({service.proc.returncode}) "
                                     f"while waiting for {what}:\n{service.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout_s:g} s: {what}")
        time.sleep(interval_s)


def records_published(bootstrap_servers: str, topic: str) -> int:
    """How many records ``topic`` holds now (sum of its partitions' fetch-reported ends)."""
    return sum(end_offsets(KafkaSettings(bootstrap_servers=bootstrap_servers), [topic]).values())


def published_keys(bootstrap_servers: str, topic: str,
                   key_of: Callable[[dict[str, Any]], Hashable | None]) -> Counter[Hashable]:
    """Count ``key_of(value)`` over every JSON record of ``topic`` (None: not counted)."""
    counts: Counter[Hashable] = Counter()
    for message in read_published(KafkaSettings(bootstrap_servers=bootstrap_servers), [topic],
                                  {}):
        key = key_of(orjson.loads(message.value() or b"null"))
        if key is not None:
            counts[key] += 1
    return counts


def duplicates(counts: Counter[Hashable]) -> int:
    """Extra copies: records beyond the first per key."""
    return sum(n - 1 for n in counts.values() if n > 1)
