"""Test-side handles on local servers, and a bounded Kafka consume helper.

The pytest fixtures (:mod:`rtml_localstack.pytest_plugin`) return these
handles; they are plain classes so benchmarks and scripts can start a
throw-away server the same way (``KafkaBroker.start(tmp_dir)``). Each handle
owns a :class:`~rtml_localstack.stack.Stack` in its own directory and drives
the same launchers as ``rtml stack up``.

About consuming in tests: the local broker's "latest" end offsets are wrong
after batched writes, so never wait "until the end offset"; wait for the
number of records you expect, with a timeout (:func:`consume`).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rtml_common.kafka.headers import normalise_headers
from rtml_localstack import process
from rtml_localstack.errors import StackError
from rtml_localstack.launchers import (
    CassandraLauncher,
    ComponentLauncher,
    KafkaLauncher,
    MlflowLauncher,
    PrometheusLauncher,
    RedisLauncher,
)
from rtml_localstack.launchers.prometheus import remove_targets, write_targets
from rtml_localstack.ports import free_port
from rtml_localstack.stack import Stack
from rtml_localstack.state import StackState

if TYPE_CHECKING:
    import redis
    from cassandra.cluster import Session
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

#: Consumer-group session timeout for tests: the local broker makes a group's
#: first join wait about half of it, so keep it short.
TEST_SESSION_TIMEOUT_MS = 6000


class ManagedServer:
    """One server process in its own state directory: start, stop, kill, restart."""

    def __init__(self, launcher: ComponentLauncher, state_dir: Path) -> None:
        self.launcher = launcher
        # Servers die with the test process even if it is killed without teardown.
        self.stack = Stack(state_dir, die_with_parent=True)

    @property
    def state_dir(self) -> Path:
        return self.stack.state_dir

    @property
    def host(self) -> str:
        return self.launcher.host

    @property
    def port(self) -> int:
        return self.launcher.port

    @property
    def log_path(self) -> Path:
        """The server's log file (worth printing when a test fails)."""
        return self.launcher.log_path(self.state_dir)

    @property
    def pid(self) -> int | None:
        record = StackState.load(self.state_dir).components.get(self.launcher.name)
        return record.pid if record else None

    def start(self) -> None:
        """Start (no-op if running) and wait for health; raise StackError on failure."""
        results = self.stack.up([self.launcher], explicit=[self.launcher.name])
        failed = [r for r in results if not r.ok]
        if failed:
            self.stack.down()
            raise StackError("\n".join(f"{r.name}: {r.detail}" for r in failed))

    def stop(self) -> None:
        """Graceful stop of this server only (helpers such as S3 keep running)."""
        self.stack.down([self.launcher.name])

    def kill(self) -> None:
        """SIGKILL the server, as in a crash; :meth:`start` brings it back."""
        state = StackState.load(self.state_dir)
        record = state.components.get(self.launcher.name)
        if record is not None:
            process.kill(record.identity)

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop everything this handle started (fixture teardown)."""
        self.stack.down()

    def __enter__(self) -> ManagedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KafkaBroker(ManagedServer):
    """A Tansu broker; ``bootstrap_servers`` is what clients need."""

    launcher: KafkaLauncher

    @classmethod
    def start_new(
        cls,
        state_dir: Path,
        create_topics: bool = True,
        durable: bool = False,
        port: int | None = None,
    ) -> KafkaBroker:
        """Start a broker on a free port (platform topics created if asked)."""
        launcher = KafkaLauncher(
            port=port or free_port(),
            durable=durable,
            s3_port=free_port() if durable else None,
            create_topics=create_topics,
        )
        broker = cls(launcher, state_dir)
        broker.start()
        return broker

    @property
    def bootstrap_servers(self) -> str:
        return self.launcher.bootstrap_servers

    @property
    def durable(self) -> bool:
        return self.launcher.durable


class RedisServer(ManagedServer):
    """A redis-server; ``url`` for clients, ``client()`` for a connected redis-py."""

    launcher: RedisLauncher

    @classmethod
    def start_new(cls, state_dir: Path) -> RedisServer:
        server = cls(RedisLauncher(port=free_port()), state_dir)
        server.start()
        return server

    @property
    def url(self) -> str:
        return self.launcher.url

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client on database 0 (caller closes it)."""
        import redis

        return redis.Redis.from_url(self.url, **kwargs)


class MlflowServer(ManagedServer):
    """An MLflow tracking server + registry; ``tracking_uri`` for clients."""

    launcher: MlflowLauncher

    @classmethod
    def start_new(cls, state_dir: Path) -> MlflowServer:
        server = cls(MlflowLauncher(port=free_port()), state_dir)
        server.start()
        return server

    @property
    def tracking_uri(self) -> str:
        return self.launcher.tracking_uri


class CassandraServer(ManagedServer):
    """The Cassandra 1.2 stand-in, keyspace ``rtml`` created; connect with :meth:`session`."""

    launcher: CassandraLauncher

    @classmethod
    def start_new(cls, state_dir: Path, heap: str = "256M") -> CassandraServer:
        server = cls(CassandraLauncher(port=free_port(), heap=heap), state_dir)
        server.start()
        return server

    @property
    def keyspace(self) -> str | None:
        return self.launcher.keyspace

    @contextlib.contextmanager
    def session(self, keyspace: str | None = None) -> Iterator[Session]:
        """A CQL session (protocol v1, consistency ONE), closed on exit."""
        from rtml_localstack.cql import connect

        cluster, session = connect(self.host, self.port, keyspace=keyspace)
        try:
            yield session
        finally:
            cluster.shutdown()


class PrometheusServer(ManagedServer):
    """Prometheus with file-based targets: add targets, wait for scrapes, query."""

    launcher: PrometheusLauncher

    @classmethod
    def start_new(cls, state_dir: Path, scrape_interval_s: int = 1) -> PrometheusServer:
        launcher = PrometheusLauncher(port=free_port(), scrape_interval_s=scrape_interval_s)
        server = cls(launcher, state_dir)
        server.start()
        return server

    @property
    def url(self) -> str:
        return self.launcher.url

    def add_target(self, address: str, job: str, labels: Mapping[str, str] | None = None) -> None:
        """Scrape ``http://address/metrics`` as ``job`` (replaces the job's targets)."""
        write_targets(self.state_dir, job, [address], labels)

    def remove_target(self, job: str) -> None:
        remove_targets(self.state_dir, job)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query via /api/v1/query; returns the ``result`` list."""
        import httpx

        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5.0)
        response.raise_for_status()
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for_scrape(self, job: str, timeout_s: float = 30.0) -> None:
        """Block until ``job`` has been scraped successfully (``up == 1``).

        Prometheus picks up new target files within ~5 s and scrapes within
        one interval after that, so allow well over 5 s.
        """
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            last = self.query(f'up{{job="{job}"}}')
            if any(sample["value"][1] == "1" for sample in last):
                return
            time.sleep(0.25)
        raise TimeoutError(f"job {job!r} not scraped within {timeout_s:g} s (last up: {last})")


@dataclass
class ConsumedRecord:
    """A record as consumed, detached from librdkafka (safe after close)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp_ms: int | None = None


def consume(
    bootstrap_servers: str,
    topic: str,
    n: int,
    timeout_s: float = 15.0,
    group_id: str | None = None,
    commit: bool = False,
    config: Mapping[str, Any] | None = None,
) -> list[ConsumedRecord]:
    """Consume exactly ``n`` records from ``topic``, or raise ``TimeoutError``.

    Without ``group_id`` it reads every partition from the beginning with no
    group (no join delay, nothing committed). With ``group_id`` it joins the
    group (``session.timeout.ms=6000``), starts at the committed offsets (or
    the earliest) and, if ``commit``, commits what it returned. Never relies
    on end offsets. Records of different partitions come in no fixed order.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    settings: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id or f"rtml-test-{uuid.uuid4().hex[:12]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": TEST_SESSION_TIMEOUT_MS,
        "allow.auto.create.topics": False,
        **(config or {}),
    }
    consumer = Consumer(settings)
    deadline = time.monotonic() + timeout_s
    records: list[ConsumedRecord] = []
    try:
        if group_id is None:
            partitions = _partitions(consumer, topic, deadline)
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        else:
            consumer.subscribe([topic])
        while len(records) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"got {len(records)} of {n} records from {topic!r} within {timeout_s:g} s"
                )
            message = consumer.poll(min(remaining, 0.5))
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.retriable() or error.code() < 0:  # partition EOF and friends
                    continue
                raise KafkaException(error)
            records.append(
                ConsumedRecord(
                    topic=message.topic() or topic,
                    partition=message.partition() or 0,
                    offset=message.offset() or 0,
                    key=message.key(),
                    value=message.value(),
                    headers=normalise_headers(message.headers()),
                    timestamp_ms=message.timestamp()[1],
                )
            )
        if commit and group_id is not None and records:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return records


def committed_offsets(bootstrap_servers: str, group_id: str,
                      topic: str = "transactions") -> dict[int, int]:
    """``group_id``'s committed offset per partition of ``topic`` that has one (from the broker).

    Opens a consumer of that group without subscribing, so asking does not
    join the group or disturb a running member.
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": group_id,
                         "enable.auto.commit": False})
    try:
        partitions = _partitions(consumer, topic, time.monotonic() + 10)
        offsets = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in offsets if tp.offset >= 0}


def _partitions(consumer: Any, topic: str, deadline: float) -> Sequence[int]:
    """Partition ids of ``topic``, waiting (until ``deadline``) for it to exist."""
    while True:
        metadata = consumer.list_topics(topic, timeout=max(0.5, deadline - time.monotonic()))
        info = metadata.topics.get(topic)
        if info is not None and info.error is None and info.partitions:
            return sorted(info.partitions)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topic {topic!r} does not exist")
        time.sleep(0.1)


def in_memory_spans() -> InMemorySpanExporter:
    """An in-memory span exporter on the process's SDK tracer provider (installed if none is).

    For tests asserting on spans: every span the process ends from now on is
    also kept by the returned exporter (``get_finished_spans()``, ``clear()``).
    OpenTelemetry lets a process set its provider once, so this adds to an
    existing SDK provider rather than replacing it.
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T], timeout_s: float,
             interval_s: float = 0.25) -> T:
    """Poll ``check`` until it returns something truthy, and return that; after
    ``timeout_s`` fail naming ``what`` (tests wait on services, never sleep a fixed time)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"{what} did not happen within {timeout_s:.0f} s")
