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

The process handling itself (start with an environment, log to a file,
SIGKILL, SIGTERM) is :mod:`rtml_localstack.crash`, shared with the services'
own crash tests; this module adds kill timing, tallies, paced producers and
the profiles.

Scale: the CI profile (default) keeps the five cases to about 4 minutes on 2
cores (one fault each, ~4,000 records); ``make chaos`` sets
``RTML_FAULTS_PROFILE=chaos`` for bigger replays and three faults per case,
and ``RTML_FAULTS_REPORT`` to the markdown report the session writes
(``tests/faults/conftest.py``).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtml_localstack import crash

#: Session timeout of services under test: the local broker makes a group's first
#: join wait about half of it, and a killed member's partitions wait for all of it.
SESSION_TIMEOUT_MS = 6000


@dataclass(frozen=True)
class Profile:
    """How big a fault run is."""

    name: str
    #: Records (transactions / decisions / scores) per case.
    records: int
    #: Faults (kill -9, outages) per case.
    kill_rounds: int
    #: Producing rate of the paced input (records per second): slow enough that the stream
    #: outlasts every fault and its recovery (~10 s each, mostly the group's session timeout).
    rate: float
    #: The durable-broker case (its storage is slower, see test_broker_outage.py).
    durable_records: int
    durable_rate: float
    #: Idle time after which an uninterrupted reference run counts as done: a big backlog
    #: on a busy machine can leave a consumer without a record for seconds.
    reference_idle_s: float


PROFILES = {
    "ci": Profile("ci", records=4000, kill_rounds=1, rate=800.0, durable_records=2000,
                  durable_rate=200.0, reference_idle_s=3.0),
    "chaos": Profile("chaos", records=24000, kill_rounds=3, rate=250.0, durable_records=6000,
                     durable_rate=100.0, reference_idle_s=10.0),
}


def profile() -> Profile:
    """The profile named by ``RTML_FAULTS_PROFILE`` (``ci`` when unset)."""
    name = os.environ.get("RTML_FAULTS_PROFILE", "ci")
    if name not in PROFILES:
        raise ValueError(f"RTML_FAULTS_PROFILE={name!r}: one of {sorted(PROFILES)}")
    return PROFILES[name]


class ServiceProcess(crash.ServiceProcess):
    """:class:`rtml_localstack.crash.ServiceProcess`, counting kills and timing them."""

    def __init__(self, module: str, env: Mapping[str, str], log_dir: Path) -> None:
        super().__init__(module, env, log_dir)
        self.kills = 0

    def kill9(self) -> float:  # type: ignore[override]
        """SIGKILL now, as a crash; returns the kill's ``time.monotonic()``."""
        killed_at = time.monotonic()
        super().kill9()
        self.kills += 1
        return killed_at

    def logged(self, text: str) -> bool:
        """Whether the current run's log has a line containing ``text``."""
        return text in self.log().rsplit("===== start", 1)[-1]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str,
               watch: Iterable[ServiceProcess] = (), interval_s: float = 0.05) -> float:
    """:func:`rtml_localstack.crash.wait_until`, returning when it became true (monotonic)."""
    crash.wait_until(condition, timeout_s, what, watch, interval_s)
    return time.monotonic()


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


def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record ``topic`` holds now (to the fetch-reported ends: exact, no idle wait)."""
    from rtml_common.config import KafkaSettings
    from rtml_common.kafka.published import read_published

    return list(read_published(KafkaSettings(bootstrap_servers=bootstrap), [topic], {}))


def vector_tally(bootstrap: str, transaction_ids: Iterable[str]) -> Tally:
    """Feature vectors on ``features`` per (transaction, revision) vs. the transactions sent."""
    found = crash.published_keys(bootstrap, "features",
                                 lambda v: (v["transaction_id"], v.get("revision", 0)))
    first = Counter({tx: n for (tx, revision), n in found.items() if revision == 0})
    base = tally(transaction_ids, first.elements())
    # A revision published twice is a duplicate too.
    extra = crash.duplicates(Counter({k: n for k, n in found.items() if k[1] != 0}))
    return Tally(base.sent, sum(found.values()), base.lost, base.duplicated + extra,
                 base.unexpected)


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
