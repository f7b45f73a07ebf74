"""``rtml up`` end to end against a real stack, then a crash, then ``rtml down``.

The stack runs in the test's own state directory on free ports (started with
the same :class:`~rtml_localstack.stack.Stack` API ``rtml stack up`` uses), so
``up`` finds it running and leaves it to the test: the path a developer takes
after ``rtml stack up``. ``up`` trains and promotes a champion on a small
simulated data set, starts every service under the supervisor and returns
once all are healthy. The test then checks a real decision, idempotence,
``status``, Prometheus scraping every job, a SIGKILLed scorer being restarted
and counted (``platform.json`` and the supervisor's ``/metrics``), that the
traffic source's payments were decided, logged in Cassandra and scored by the
champion and the shadow with nothing lost across the scorer's crash, and that
``down`` leaves no process of the platform (pids and their process groups).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from rtml_cli.platform.catalog import SERVICE_NAMES, TRAFFIC, TrafficOptions
from rtml_cli.platform.champion import current_alias, current_champion
from rtml_cli.platform.command import app
from rtml_cli.platform.control import down, up
from rtml_cli.platform.files import PlatformPaths, read_status
from rtml_localstack.launchers import PrometheusLauncher
from rtml_localstack.launchers.prometheus import targets_dir
from rtml_localstack.ports import free_port, free_ports
from rtml_localstack.process import group_alive, pid_alive
from rtml_localstack.stack import Stack, build_launchers
from rtml_localstack.testing import wait_for
from rtml_simulator.config import SimulationConfig
from rtml_simulator.io import write_dataset
from rtml_simulator.simulate import simulate

pytestmark = pytest.mark.integration

#: 30 days: the champion trains on the last 21 (7 train, 7 label delay, 7 test).
SMALL = SimulationConfig(n_customers=300, n_terminals=600, n_days=30, seed=3)
JOBS = {"feature-pipeline", "scorer", "decision-api", "model-registry", "shadow-auditor",
        "drift-monitor", "retrain-worker", "decision-log-writer", "consistency-monitor",
        "platform-supervisor"}
WAIT_S = 90.0


def _wait_for(what: str, check: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
    return wait_for(what, check, timeout_s, interval_s=0.25)


@pytest.fixture
def stack_dir(tmp_path: Path) -> Iterator[Path]:
    """A running stack in a state directory of the test's own, on free ports."""
    names = ["kafka", "redis", "mlflow", "cassandra"]
    if PrometheusLauncher().unavailable() is None:
        names.append("prometheus")
    state = tmp_path / "state"
    stack = Stack(state, die_with_parent=True)
    results = stack.up(build_launchers(names, dict(zip(names, free_ports(len(names)),
                                                       strict=True)),
                                       options={"prometheus": {"scrape_interval_s": 1}}))
    failed = [f"{r.name}: {r.detail}" for r in results if not r.ok]
    if failed:
        stack.down()
        pytest.fail("could not start the stack:\n" + "\n".join(failed), pytrace=False)
    yield state
    stack.down()


def _metric(text: str, name: str, service: str) -> float | None:
    found = re.search(rf'^{name}\{{service="{service}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else None


def _logged_traffic_ids(client_env: dict[str, str]) -> set[str]:
    """Transaction ids of the traffic source's decisions in the Cassandra decision log."""
    from datetime import UTC, datetime, timedelta

    from rtml_common.config import CassandraSettings
    from rtml_decision.decision_log.cassandra.store import CassandraDecisionLog

    settings = CassandraSettings(
        contact_points=client_env["RTML_CASSANDRA_CONTACT_POINTS"],
        port=int(client_env["RTML_CASSANDRA_PORT"]),
        protocol_version=int(client_env["RTML_CASSANDRA_PROTOCOL_VERSION"]))
    log = CassandraDecisionLog.from_settings(settings)
    try:
        rows = log.read(100_000, since=datetime.now(UTC) - timedelta(days=60))
    finally:
        log.close()
    return {r.decision.transaction_id for r in rows
            if r.decision.transaction_id.startswith("traffic-")}


def _scored_ids(bootstrap: str, topic: str, wanted: set[str], timeout_s: float) -> set[str]:
    """Transaction ids of ``wanted`` found on ``topic`` (read from the start) within the time."""
    import uuid

    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    found: set[str] = set()
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while found != wanted and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            tx = json.loads(message.value() or b"{}")["transaction_id"]
            if tx in wanted:
                found.add(tx)
    finally:
        consumer.close()
    return found


def _prometheus_up(url: str) -> dict[str, float]:
    body = httpx.get(f"{url}/api/v1/query", params={"query": "up"}, timeout=5).json()
    return {r["metric"]["job"]: float(r["value"][1]) for r in body["data"]["result"]}


def test_up_supervises_every_service_and_down_leaves_nothing(stack_dir: Path,
                                                             tmp_path: Path) -> None:
    data = write_dataset(simulate(SMALL), tmp_path / "data")
    has_traffic = importlib.util.find_spec("rtml_cli.traffic") is not None
    traffic = TrafficOptions(rate=5, speed=3600, data=data) if has_traffic else None
    expected = {*SERVICE_NAMES, *([TRAFFIC] if has_traffic else [])}
    output = io.StringIO()
    console = Console(file=output, width=200)
    paths = PlatformPaths(stack_dir)
    client_env = Stack(stack_dir).client_env()
    downed = False
    try:
        started = time.monotonic()
        result = up(stack_dir, api_port=free_port(), data_dir=data, traffic=traffic,
                    timeout_s=150, console=console)
        print(f"up took {time.monotonic() - started:.0f} s")
        assert not result.already_running and result.stack_started == []
        services = result.status["services"]
        assert set(services) == expected
        assert all(record["healthy"] for record in services.values()), services
        supervisor = result.status["supervisor"]

        # A champion was trained and promoted: the API decides with it, not degraded.
        champion = current_champion(client_env["RTML_MLFLOW_TRACKING_URI"], "fraud-detector")
        assert champion is not None
        decision = httpx.post(f"{result.status['api_url']}/v1/decisions", json={
            # At the traffic's clock (now): the feature pipeline refuses a stream whose
            # event time jumps by years (its guard), whichever of the two came first.
            "transaction_id": "platform-test-1",
            "event_time": datetime.now(UTC).isoformat(),
            "customer_id": "c-1", "terminal_id": "t-1", "amount": 42.0}, timeout=10)
        assert decision.status_code == 200, decision.text
        assert decision.json()["degraded"] is False
        assert decision.json()["model_version"] == champion

        # A second `up` changes nothing and says so.
        again = up(stack_dir, api_port=free_port(), data_dir=data, console=console)
        assert again.already_running
        assert read_status(paths.status)["supervisor"]["pid"] == supervisor["pid"]  # type: ignore[index]
        assert "already running" in output.getvalue()

        runner = CliRunner()
        shown = runner.invoke(app, ["status", "--state-dir", str(stack_dir)],
                              env={"COLUMNS": "250"})
        assert shown.exit_code == 0, shown.output
        for name in expected:
            assert name in shown.output

        # Prometheus scrapes every service and the supervisor, under their own job names.
        prometheus = Stack(stack_dir).launchers().get("prometheus")
        if prometheus is not None:
            files = {p.stem for p in targets_dir(stack_dir).glob("*.json")}
            assert files == JOBS
            groups = json.loads((targets_dir(stack_dir) / "scorer.json").read_text())
            assert groups[0]["labels"]["job"] == "scorer"
            assert groups[0]["targets"] == [f"127.0.0.1:{services['scorer']['metrics_port']}"]
            url = f"http://{prometheus.address}"
            up_by_job = _wait_for("Prometheus scraping every job", lambda: (
                (found := _prometheus_up(url)) and all(found.get(j) == 1 for j in JOBS)
                and found))
            assert up_by_job["platform-supervisor"] == 1
        else:
            print("Prometheus is not installed: scraping not checked")

        # A service killed outright is restarted, and the restart is counted.
        old = services["scorer"]["pid"]
        os.kill(old, signal.SIGKILL)
        scorer = _wait_for("the scorer restarted and healthy", lambda: (
            (r := read_status(paths.status)["services"]["scorer"])["restarts"] == 1  # type: ignore[index]
            and r["healthy"] and r))
        assert scorer["pid"] != old and pid_alive(scorer["pid"]) and not pid_alive(old)
        assert scorer["last_exit"] == -signal.SIGKILL
        metrics = httpx.get(f"http://127.0.0.1:{supervisor['metrics_port']}/metrics",
                            timeout=5).text
        assert _metric(metrics, "rtml_platform_service_restarts_total", "scorer") == 1.0
        assert _metric(metrics, "rtml_platform_service_up", "scorer") == 1.0
        for name in expected - {"scorer"}:
            assert _metric(metrics, "rtml_platform_service_restarts_total", name) == 0.0

        # A champion and a challenger in shadow: the scorer has a shadow to score.
        challenger = current_alias(client_env["RTML_MLFLOW_TRACKING_URI"], "fraud-detector",
                                   "challenger")
        assert challenger is not None and challenger != champion
        if has_traffic:
            # The traffic source's payments were decided and logged in Cassandra (some of them
            # while the scorer was down), and every one was scored by the champion and by the
            # shadow: nothing lost across the scorer's crash.
            decided = _wait_for("20 traffic decisions in the Cassandra decision log", lambda: (
                (ids := _logged_traffic_ids(client_env)) and len(ids) >= 20 and ids))
            bootstrap = client_env["RTML_KAFKA_BOOTSTRAP_SERVERS"]
            for topic in ("predictions", "shadow-scores"):
                scored = _scored_ids(bootstrap, topic, decided, timeout_s=WAIT_S)
                assert scored == decided, (
                    f"{len(decided - scored)} of {len(decided)} decided payments never reached "
                    f"{topic}: {sorted(decided - scored)[:5]}")
        final = read_status(paths.status)
        assert final is not None
        pids = [supervisor["pid"], old,
                *(r["pid"] for r in final["services"].values() if r["pid"])]
        assert len(pids) == len(expected) + 2

        started = time.monotonic()
        notes = down(stack_dir, console=console)
        downed = True
        print(f"down took {time.monotonic() - started:.0f} s")
        assert any("supervisor" in n and "stopped" in n for n in notes), notes
        assert any("left running" in n for n in notes), notes
        for pid in pids:
            assert not pid_alive(pid), f"pid {pid} survived `down`"
            assert not group_alive(pid), f"process group of {pid} survived `down`"
        assert not paths.status.exists()
        assert not list(targets_dir(stack_dir).glob("*.json"))
        # The stack was running before `up`: it is left running.
        assert {"kafka", "redis", "mlflow", "cassandra"} <= set(Stack(stack_dir).launchers())
        stopped = runner.invoke(app, ["status", "--state-dir", str(stack_dir)])
        assert stopped.exit_code == 1 and "not running" in stopped.output
    finally:
        if not downed:
            down(stack_dir, console=console)
            print(output.getvalue())
