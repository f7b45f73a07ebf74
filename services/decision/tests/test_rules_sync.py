"""Rule activations reach every worker process of every replica (issue #21 item 5).

Two replicas of ``python -m rtml_decision``, each with two uvicorn workers
(four processes), on real Kafka, Redis and MLflow: an upload on one replica
is decided with by every process within :data:`PROPAGATION_S` (each
worker's Prometheus endpoint shows the revision it holds; decisions on
fresh connections record the version); processes started with a set
already stored (a restart) start with it rather than their file; two
concurrent uploads on different replicas converge on the one stored last; a
corrupted stored set is refused by every process, which keeps deciding with
the rules it held. The periodic re-read is set far
beyond the waits here, so what is shown is the announcement.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
import xgboost as xgb

from rtml_decision.rule_store import RuleStore
from rtml_decision.rules import parse_rule_set
from rtml_features.baseline import BASELINE
from rtml_localstack.environment import without_developer_settings
from rtml_localstack.ports import free_port
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.xgboost import XGBoostModel

#: ~40-50 s on 2 cores, most of it four worker processes starting.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN_KEY = "test-admin-key-0123456789"
#: How long every process may take to decide with an uploaded set.
PROPAGATION_S = 10.0
RULES = """
name: shared
version: "{version}"
rules:
  - {{name: big_amount, when: "amount >= 1000", outcome: review, reason: LARGE_AMOUNT}}
"""


@dataclass
class Replica:
    """One ``python -m rtml_decision`` with two workers: its port and its workers' metrics."""

    process: subprocess.Popen[bytes]
    port: int
    metrics_ports: tuple[int, int]
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def worker_metrics(self) -> list[str]:
        """Each worker's Prometheus text (it fails until every worker serves its metrics)."""
        return [httpx.get(f"http://127.0.0.1:{p}/metrics", timeout=2).text
                for p in self.metrics_ports]

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def metric(text: str, name: str, labels: str = "") -> float | None:
    """The value of series ``name`` (whose labels contain ``labels``) in Prometheus text."""
    for match in re.finditer(rf"^{name}(?:\{{([^}}]*)\}})? (\S+)$", text, re.MULTILINE):
        if labels in (match.group(1) or ""):
            return float(match.group(2))
    return None


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = condition()
        except (httpx.HTTPError, ValueError, KeyError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:g} s")
        time.sleep(0.1)


def free_pair(taken: set[int]) -> int:
    """A port ``p`` with ``p + 1`` free too (worker *i* serves metrics on base + *i*)."""
    while True:
        base = free_port()
        if {base, base + 1} & taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("", base + 1))
            except OSError:
                continue
        taken.update({base, base + 1})
        return base


@pytest.fixture(scope="module")
def champion_model(mlflow_server: Any) -> str:
    rng = np.random.default_rng(0)
    rows = rng.random((200, len(BASELINE.names))) * 10
    labels = (rows[:, 0] > 7).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                        xgb.DMatrix(rows, label=labels, feature_names=list(BASELINE.names)),
                        num_boost_round=3)
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    name = f"rules-sync-{uuid.uuid4().hex[:8]}"
    version = registry.register(name, XGBoostModel(booster), feature_set=BASELINE)
    registry.set_alias(name, "champion", version.version)
    return name


@dataclass
class Replicas:
    """Starts replicas sharing one rule store (``prefix``)."""

    start: Callable[[], Replica]
    prefix: str


@pytest.fixture
def replicas(kafka_broker: Any, redis_server: Any, mlflow_server: Any, champion_model: str,
             tmp_path: Path) -> Iterator[Replicas]:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES.format(version="file"))
    prefix = f"rtml:test-rules-{uuid.uuid4().hex[:10]}:"
    started: list[Replica] = []
    taken: set[int] = set()

    def start() -> Replica:
        port, metrics_base = free_port(), free_pair(taken)
        env = without_developer_settings(os.environ)
        env.update(
            RTML_DECISION_HTTP_PORT=str(port), RTML_DECISION_WORKERS="2",
            RTML_DECISION_MODEL_NAME=champion_model, RTML_DECISION_RULES_PATH=str(rules_file),
            RTML_DECISION_ADMIN_API_KEY=ADMIN_KEY, RTML_DECISION_RULES_KEY_PREFIX=prefix,
            RTML_DECISION_RULES_REFRESH_INTERVAL_S="600", RTML_DECISION_LOG_WRITER="false",
            RTML_KAFKA_BOOTSTRAP_SERVERS=kafka_broker.bootstrap_servers,
            RTML_REDIS_URL=redis_server.url, RTML_MLFLOW_TRACKING_URI=mlflow_server.tracking_uri,
            RTML_CASSANDRA_PORT=str(free_port()), RTML_TELEMETRY_LOG_LEVEL="WARNING",
            RTML_TELEMETRY_METRICS_PORT=str(metrics_base))
        log = tmp_path / f"replica-{len(started)}.log"
        process = subprocess.Popen([sys.executable, "-m", "rtml_decision"], env=env,
                                   stdout=log.open("wb"), stderr=subprocess.STDOUT)
        replica = Replica(process, port, (metrics_base, metrics_base + 1), log)
        started.append(replica)
        return replica

    yield Replicas(start, prefix)
    for replica in started:
        if replica.process.poll() is None:
            replica.process.terminate()
    for replica in started:
        try:
            replica.process.wait(30)
        except subprocess.TimeoutExpired:
            replica.process.kill()


def ready(replica: Replica) -> None:
    """Both workers built (their revision gauge exists) and the champion served."""
    def check() -> bool:
        assert replica.process.poll() is None, f"replica exited:\n{replica.tail()}"
        served = httpx.get(replica.url("/healthz"), timeout=2).json()["models"]
        return bool(served.get("champion")) and all(
            metric(text, "rtml_decision_rules_revision") is not None
            for text in replica.worker_metrics())
    try:
        wait_for(check, 120, "replica ready")
    except TimeoutError:
        raise AssertionError(f"replica not ready:\n{replica.tail()}") from None


def everyone_decides_with(fleet: list[Replica], version: str, revision: int) -> None:
    """Within PROPAGATION_S every worker holds ``revision``; decisions record ``version``."""
    def converged() -> bool:
        return all(metric(text, "rtml_decision_rules_revision") == revision
                   for replica in fleet for text in replica.worker_metrics())
    wait_for(converged, PROPAGATION_S, f"every worker at revision {revision}")
    for replica in fleet:
        for _ in range(6):  # fresh connections: the kernel spreads them over the workers
            body = {"transaction_id": f"tx-{uuid.uuid4().hex}", "customer_id": "c-1",
                    "terminal_id": "t-1", "amount": 12.5,
                    "event_time": datetime.now(UTC).isoformat()}
            decision = httpx.post(replica.url("/v1/decisions"), json=body, timeout=10).json()
            assert not decision["degraded"], decision
            assert decision["rule_set_version"] == version


def upload(replica: Replica, version: str) -> dict[str, Any]:
    response = httpx.put(replica.url("/v1/admin/rules"), content=RULES.format(version=version),
                         headers={"X-API-Key": ADMIN_KEY, "Content-Type": "application/yaml"},
                         timeout=60)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_activations_reach_every_worker_of_every_replica(
        replicas: Replicas, redis_server: Any) -> None:
    client = redis.Redis.from_url(redis_server.url)
    store = RuleStore(client, replicas.prefix)
    # what a previous run of the deployment activated: (re)started processes load it,
    # not their file (a restart of one process is the same start-up path)
    earlier = RULES.format(version="1")
    revision, _ = store.activate(parse_rule_set(earlier), earlier, "upload")
    fleet = [replicas.start(), replicas.start()]
    for replica in fleet:
        ready(replica)
    everyone_decides_with(fleet, parse_rule_set(earlier).version, revision)
    assert {httpx.get(r.url("/v1/rules")).json()["source"] for r in fleet} == {"upload"}

    first = upload(fleet[0], "2")
    assert first["revision"] > revision
    everyone_decides_with(fleet, first["version"], first["revision"])

    # two uploads at once on different replicas: the one stored last wins everywhere
    answers: list[dict[str, Any]] = []
    uploads = [threading.Thread(target=lambda r=r, v=v: answers.append(upload(r, v)))
               for r, v in ((fleet[0], "3"), (fleet[1], "4"))]
    for thread in uploads:
        thread.start()
    for thread in uploads:
        thread.join(60)
    assert len(answers) == 2
    stored = max(answers, key=lambda a: a["revision"])
    in_redis = store.load()
    assert in_redis is not None and in_redis.revision == stored["revision"]
    assert min(a["revision"] for a in answers) > first["revision"]
    everyone_decides_with(fleet, stored["version"], stored["revision"])

    # a corrupted stored set: refused by every process, which keeps its rules
    bad = int(client.incr(store.revision_key))
    client.hset(store.active_key, mapping={"revision": bad, "text": "rules: [unclosed"})
    client.publish(store.channel, bad)
    wait_for(lambda: all((metric(text, "rtml_decision_rules_sync_failures_total",
                                 'reason="invalid"') or 0) >= 1
                         for replica in fleet for text in replica.worker_metrics()),
             PROPAGATION_S, "every worker refused the corrupted set")
    assert all(replica.process.poll() is None for replica in fleet)
    everyone_decides_with(fleet, stored["version"], stored["revision"])
    client.close()
