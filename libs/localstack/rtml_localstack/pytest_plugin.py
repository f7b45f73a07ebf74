"""pytest fixtures that start real local servers, lazily, on free ports.

Loaded for the whole repository by the root pyproject.toml
(``-p rtml_localstack.pytest_plugin``). Nothing starts unless a test asks
for a fixture, so unit-test runs pay nothing; each server then runs in a
temporary directory on a port picked at run time and is stopped at the end
of the session (or test, for the function-scoped ones).

Session-scoped (shared by all tests; don't stop them, use unique topic,
key and table names):

* ``kafka_broker`` - ``.bootstrap_servers``; all platform topics created.
* ``redis_server`` - ``.url``, ``.host``, ``.port``, ``.client()``.
* ``redis_cluster`` - a 3-master Redis Cluster with a replica per master:
  ``.url`` (``redis+cluster://``), ``.masters()``, ``.failover(master)``.
* ``mlflow_server`` - ``.tracking_uri``.
* ``cassandra_server`` - ``.host``, ``.port``, ``.keyspace`` ("rtml"),
  ``.session(keyspace)`` (CQL protocol v1, consistency ONE).
* ``prometheus_server`` - ``.url``, ``.add_target(addr, job)``,
  ``.wait_for_scrape(job)``, ``.query(promql)``; skips the test when the
  prometheus binary is not installed.

Function-scoped:

* ``fresh_kafka_broker`` - an empty broker of the test's own (~15 ms to
  start) with ``.stop()``, ``.start()``, ``.restart()``, ``.kill()``.
* ``kafka_broker_factory`` - ``factory(durable=False, create_topics=False)``
  for more brokers, e.g. a durable one that must survive restarts.

Helpers for tests: :func:`rtml_localstack.testing.consume`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

from rtml_localstack.errors import ComponentUnavailable, StackError
from rtml_localstack.launchers import PrometheusLauncher
from rtml_localstack.redis_cluster import LocalRedisCluster
from rtml_localstack.testing import (
    CassandraServer,
    KafkaBroker,
    ManagedServer,
    MlflowServer,
    PrometheusServer,
    RedisServer,
)

_START_ERRORS = (StackError, ComponentUnavailable)
S = TypeVar("S", bound=ManagedServer)


def _cannot_start(what: str, exc: Exception) -> NoReturn:
    """A readable test error for a server that didn't start (message has its log tail)."""
    pytest.fail(f"could not start {what}:\n{exc}", pytrace=False)


def _dir(factory: pytest.TempPathFactory, name: str) -> Path:
    return factory.mktemp(f"rtml-{name}", numbered=True)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A shared Kafka-protocol broker with every platform topic created."""
    try:
        server = KafkaBroker.start_new(_dir(tmp_path_factory, "kafka"))
    except _START_ERRORS as exc:
        _cannot_start("the Kafka-protocol broker", exc)
    yield server
    server.close()


@pytest.fixture
def fresh_kafka_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """An empty broker for this test only (no topics); free to stop/kill/restart."""
    try:
        server = KafkaBroker.start_new(tmp_path / "kafka", create_topics=False)
    except _START_ERRORS as exc:
        _cannot_start("a fresh Kafka-protocol broker", exc)
    yield server
    server.close()


@pytest.fixture
def kafka_broker_factory(tmp_path: Path) -> Iterator[Callable[..., KafkaBroker]]:
    """``factory(durable=False, create_topics=False) -> KafkaBroker``; stopped after the test."""
    brokers: list[KafkaBroker] = []

    def factory(durable: bool = False, create_topics: bool = False) -> KafkaBroker:
        state_dir = tmp_path / f"kafka-{len(brokers)}"
        if durable:
            # s3rver comes from npm on first use; no npm here means a skip, not a failure.
            from rtml_localstack.launchers import S3Launcher

            problem = S3Launcher().unavailable()
            if problem:
                pytest.skip(problem)
        try:
            broker = KafkaBroker.start_new(state_dir, create_topics=create_topics, durable=durable)
        except ComponentUnavailable as exc:
            pytest.skip(str(exc))
        except StackError as exc:
            if durable and "npm" in str(exc):
                pytest.skip(str(exc))
            _cannot_start("a Kafka-protocol broker", exc)
        brokers.append(broker)
        return broker

    yield factory
    for broker in brokers:
        broker.close()


def _serve(start: Callable[[], S], what: str) -> Iterator[S]:
    """Start a server for a fixture, fail it with a clear reason, stop it afterwards."""
    try:
        server = start()
    except _START_ERRORS as exc:
        _cannot_start(what, exc)
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A shared redis-server (no persistence)."""
    yield from _serve(lambda: RedisServer.start_new(_dir(tmp_path_factory, "redis")),
                      "redis-server (install it with scripts/install-system-deps.sh)")


@pytest.fixture
def fresh_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """An empty redis-server for this test only: for tests that run whole services, whose
    keys (feature hashes, checkpoints) must not leak into other tests' Redis."""
    yield from _serve(lambda: RedisServer.start_new(tmp_path / "redis"),
                      "redis-server (install it with scripts/install-system-deps.sh)")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """A shared local Redis Cluster: 3 masters with a replica each (``.url`` is the
    ``redis+cluster://`` form, ``.failover(master)`` moves a master's slots to its
    replica). A test that fails a master over leaves the cluster serving every slot."""
    try:
        cluster = LocalRedisCluster.start_new(_dir(tmp_path_factory, "redis-cluster"))
    except _START_ERRORS as exc:
        _cannot_start("a local Redis Cluster (redis-server, redis-cli)", exc)
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A shared MLflow tracking server + registry (SQLite, proxied artifacts)."""
    yield from _serve(lambda: MlflowServer.start_new(_dir(tmp_path_factory, "mlflow")),
                      "the MLflow server")


@pytest.fixture(scope="session")
def cassandra_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CassandraServer]:
    """A shared Cassandra 1.2 stand-in with keyspace ``rtml``."""
    yield from _serve(lambda: CassandraServer.start_new(_dir(tmp_path_factory, "cassandra")),
                      "the Cassandra stand-in")


@pytest.fixture(scope="session")
def prometheus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A shared Prometheus scraping every second; skipped if not installed."""
    problem = PrometheusLauncher().unavailable()
    if problem:
        pytest.skip(problem)
    yield from _serve(lambda: PrometheusServer.start_new(_dir(tmp_path_factory, "prometheus")),
                      "Prometheus")
