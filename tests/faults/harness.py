"""Fault-injection harness: services as real processes, kill -9, recovery timing, outcomes.

Why processes and SIGKILL: a service stopped politely (SIGTERM) finishes its
batch, flushes and commits, which is exactly what a crash does not do. Each
service under test runs as ``python -m <module>`` with its configuration in
the environment, as it is deployed, and is killed with SIGKILL at a point
chosen from what it has visibly done (rows in its store, records on a topic),
never after a sleep.

Outcomes are read back from the real stores and topics afterwards and
compared with what was sent: ``lost`` = ids sent but never found, and
``duplicated`` = effects found more than once for one id (see
:func:`tally`). Recovery time is measured from the kill to the moment the
restarted service has caught up, i.e. its effects cover every input that
had been produced when it was killed (:func:`wait_until` returns when that
became true).

Scale: the CI profile (default) keeps every case to seconds; ``make chaos``
sets ``RTML_FAULTS_PROFILE=chaos`` for bigger replays and more kill rounds,
and ``RTML_FAULTS_REPORT`` to the markdown report the session writes
(``tests/faults/conftest.py``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Session timeout of services under test: the local broker makes a group's first
#: join wait about half of it, and a killed member's partitions wait for all of it.
SESSION_TIMEOUT_MS = 6000


@dataclass(frozen=True)
class Profile:
    """How big a fault run is."""

    name: str
    #: Records (transactions / decisions / scores) per case.
    records: int
    #: Kill -9 rounds per service case.
    kill_rounds: int
    #: Producing rate of the paced input (records per second).
    rate: float


PROFILES = {
    "ci": Profile("ci", records=4000, kill_rounds=1, rate=800.0),
    "chaos": Profile("chaos", records=30000, kill_rounds=3, rate=2000.0),
}


def profile() -> Profile:
    """The profile named by ``RTML_FAULTS_PROFILE`` (``ci`` when unset)."""
    name = os.environ.get("RTML_FAULTS_PROFILE", "ci")
    if name not in PROFILES:
        raise ValueError(f"RTML_FAULTS_PROFILE={name!r}: one of {sorted(PROFILES)}")
    return PROFILES[name]


class ServiceProcess:
    """One service as ``python -m module``; output to a log file (a pipe could fill up)."""

    def __init__(self, module: str, env: Mapping[str, str], log_dir: Path,
                 args: Iterable[str] = ()) -> None:
        self.module = module
        self.args = list(args)
        # Inherit PATH & co. but none of the developer's RTML_* settings.
        base = {k: v for k, v in os.environ.items() if not k.upper().startswith("RTML_")}
        self.env = {**base, "RTML_TELEMETRY_LOG_JSON": "false", **env}
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.module}.log"

    def start(self) -> None:
        """Start (again): each start appends to the same log, with a marker line."""
        assert not self.alive, f"{self.module} is already running"
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            self.proc = subprocess.Popen([sys.executable, "-m", self.module, *self.args],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> float:
        """SIGKILL now, as a crash; returns the kill's ``time.monotonic()``."""
        assert self.proc is not None and self.alive, f"{self.module} is not running: {self.tail()}"
        killed_at = time.monotonic()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.kills += 1
        return killed_at

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def logged(self, text: str) -> bool:
        """Whether the current run's log has a line containing ``text``."""
        return text in self.tail(10**7).rsplit("===== start", 1)[-1]

    def wait_exit(self, timeout_s: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def tail(self, chars: int = 4000) -> str:
        """The end of the log, for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"

    def close(self) -> None:
        """Kill if still running (test teardown)."""
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(timeout=30)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str,
               watch: Iterable[ServiceProcess] = (), interval_s: float = 0.1) -> float:
    """Poll ``condition`` until true; returns when it became true (``time.monotonic()``).

    Fails at once, with the log tail, if a watched process exits meanwhile: a
    crashed service must not look like a slow one.
    """
    deadline = time.monotonic() + timeout_s
    watched = list(watch)
    while True:
        if condition():
            return time.monotonic()
        for service in watched:
            if service.proc is not None and not service.alive:
                raise AssertionError(f"{service.module} exited ({service.proc.returncode}) "
                                     f"while waiting for {what}:\n{service.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout_s:g} s: {what}")
        time.sleep(interval_s)


@dataclass(frozen=True)
class Tally:
    """Sent ids compared with the effects found for them."""

    sent: int
    found: int
    lost: int
    duplicated: int
    unexpected: int


def tally(sent: Iterable[str], found: Iterable[str]) -> Tally:
    """``lost``: sent, never found; ``duplicated``: extra copies of a found id."""
    expected = set(sent)
    counts = Counter(found)
    return Tally(sent=len(expected), found=sum(counts.values()),
                 lost=len(expected - counts.keys()),
                 duplicated=sum(n - 1 for n in counts.values() if n > 1),
                 unexpected=len(counts.keys() - expected))


@dataclass
class FaultResult:
    """One case's figures, for the chaos report."""

    case: str
    fault: str
    records: int
    faults: int
    lost: int
    duplicated: int
    recovery_s: list[float] = field(default_factory=list)
    notes: str = ""

    def as_row(self) -> dict[str, Any]:
        rec = self.recovery_s
        return {"case": self.case, "fault": self.fault, "records": self.records,
                "faults": self.faults, "lost": self.lost, "duplicated": self.duplicated,
                "recovery_max_s": round(max(rec), 2) if rec else None,
                "recovery_median_s": round(sorted(rec)[len(rec) // 2], 2) if rec else None,
                "notes": self.notes}


class PacedProducer(threading.Thread):
    """Calls ``send(i)`` for ``i in range(first, n)`` at ``rate`` per second, in a thread.

    ``produced`` counts records handed to the producer (``first`` of them
    before the thread started: a warm-up the test produced itself, so the
    service has joined its group before the paced part); the thread flushes
    at the end and re-raises a producing error from :meth:`finish`.
    """

    def __init__(self, send: Callable[[int], None], flush: Callable[[], None], n: int,
                 rate: float, first: int = 0) -> None:
        super().__init__(daemon=True, name="paced-producer")
        self.send, self.flush, self.n, self.rate, self.first = send, flush, n, rate, first
        self.produced = first
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            started = time.monotonic()
            for i in range(self.first, self.n):
                ahead = started + (i - self.first) / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                self.send(i)
                self.produced = i + 1
            self.flush()
        except BaseException as error:  # reported by finish()
            self.error = error

    def finish(self, timeout_s: float = 120.0) -> None:
        self.join(timeout_s)
        assert not self.is_alive(), "the producer did not finish"
        if self.error is not None:
            raise self.error


class CountingSink:
    """An :class:`~rtml_common.kafka.producer.EventProducer` that counts records per topic.

    Handed to :func:`rtml_simulator.replay.replay` as its producer, so a test
    knows how much input existed at the moment it injected a fault.
    """

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.sent: Counter[str] = Counter()

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None,
                 headers: Any = None) -> None:
        self.producer.send_raw(topic, key, value, headers)
        self.sent[topic] += 1

    def failures(self) -> list[Any]:
        return list(self.producer.failures())

    def flush(self, timeout_s: float | None = None) -> None:
        self.producer.flush(timeout_s)

    @property
    def total(self) -> int:
        return sum(self.sent.values())


def read_all(bootstrap: str, topic: str, idle_timeout_s: float = 3.0) -> list[Any]:
    """Every record of ``topic`` (ends after ``idle_timeout_s`` without one)."""
    from rtml_common.kafka.reader import iter_topic

    return list(iter_topic(bootstrap, topic, idle_timeout_s=idle_timeout_s))


def vector_tally(bootstrap: str, transaction_ids: Iterable[str]) -> Tally:
    """Feature vectors on ``features`` per (transaction, revision) vs. the transactions sent."""
    import orjson

    found = []
    for record in read_all(bootstrap, "features"):
        body = orjson.loads(record.value())
        found.append((body["transaction_id"], body.get("revision", 0)))
    revision_0 = [tx for tx, revision in found if revision == 0]
    base = tally(transaction_ids, revision_0)
    # A revision published twice is a duplicate too.
    revised = Counter(item for item in found if item[1] != 0)
    extra = sum(n - 1 for n in revised.values())
    return Tally(base.sent, len(found), base.lost, base.duplicated + extra, base.unexpected)


def feature_pipeline_env(bootstrap: str, redis_url: str, group: str) -> dict[str, str]:
    """The feature pipeline's environment under test: checkpoints every 0.5 s."""
    return {"RTML_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "RTML_REDIS_URL": redis_url,
            "RTML_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
            "RTML_FEATURE_PIPELINE_CONSUMER_GROUP": group,
            "RTML_FEATURE_PIPELINE_CHECKPOINT_INTERVAL_S": "0.5"}


def checkpointed_events(client: Any, group: str) -> int:
    """Events the feature worker's latest checkpoint covers (0: none; -1: Redis away)."""
    import orjson
    import redis

    from rtml_feature_pipeline.checkpoint import checkpoint_key
    from rtml_features.baseline import BASELINE

    try:
        raw = client.get(checkpoint_key(group, BASELINE.name, BASELINE.version))
    except redis.RedisError:
        return -1
    return int(orjson.loads(raw)["events_applied"]) if raw else 0
