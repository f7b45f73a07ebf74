"""Every Grafana panel's PromQL returns data against the real services.

Grafana cannot run here, but what makes a dashboard useless is almost always
its queries: a metric renamed in code, a label that does not exist, a unit
suffix the exporter adds. So this test starts the services the way the closed
loop does (:class:`rtml_cli.loop.run.LoopServices`: each its own process and
configuration) plus the decision API, each with a Prometheus endpoint that a
real Prometheus scrapes, drives a short scenario through them, and runs every
panel's query:

* registry with a champion and a challenger (two trainings on different weeks);
* feature pipeline, scorer (challenger in shadow), drift monitor, shadow
  auditor, retrain worker and the decision API (decision log in Cassandra);
* 26 simulated days replayed with card testing from day 22 (drift), one
  malformed transaction (a dead letter), then decision requests including an
  idempotent retry.

Grafana's variables are replaced by fixed values (``$__rate_interval`` -> 1m,
``$__range`` -> 1h). A panel passes when its query returns at least one
series. Some panels show rare events with ``... or <base> * 0`` so they read 0
rather than "No data"; for those the fallback alone would pass, so the test
also requires every ``rtml_*`` metric a panel names to exist in Prometheus,
except the few listed in :data:`EVENT_ONLY` that only appear when something
goes wrong.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer

from rtml_cli.loop.run import LoopEnvironment, LoopServices, train_champion
from rtml_cli.loop.scenario import LoopScenario, write_scenario_data
from rtml_common.config import KafkaSettings
from rtml_common.kafka.admin import ensure_topics
from rtml_common.topics import all_topic_names
from rtml_localstack.ports import free_port
from rtml_localstack.services import ServiceProcess
from rtml_models.aliases import CHALLENGER, CHAMPION
from rtml_simulator.replay import ReplayOptions, replay

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))

#: Grafana's built-in variables, as fixed values Prometheus accepts.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}

#: Metrics that exist only once something goes wrong, which the scenario does not
#: provoke; their panels fall back to 0 (``or ... * 0``).
EVENT_ONLY = {
    "rtml_decision_degraded_total": "fallback answers (Redis down, timeouts, no model)",
    "rtml_scorer_shadow_failures_total": "a shadow model failing",
    "rtml_shadow_auditor_promotions_total": "a graduation (needs >= 1,000 matured labels)",
    "rtml_retrain_worker_trainings_total": "a retraining (held back by MIN_DAYS_AFTER_DRIFT)",
}

#: Small enough to run in about a minute, yet with drift inside the monitored days.
SCENARIO = LoopScenario(n_days=26, champion_train_day=0, monitor_from_day=22, drift_day=22)


@dataclasses.dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    title: str
    expr: str

    def describe(self) -> str:
        return f"{self.dashboard} / {self.title!r}: {self.expr}"


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for panel in panels:
        found.extend(_panels(panel.get("panels", [])) if panel.get("type") == "row" else [panel])
    return found


def panel_queries() -> list[PanelQuery]:
    queries = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in _panels(board["panels"]):
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                assert "$" not in expr, f"{path.name} / {panel['title']}: unknown variable"
                queries.append(PanelQuery(path.stem, panel["title"], expr))
    return queries


def metric_families(queries: list[PanelQuery]) -> set[str]:
    """Exported metric names the panels use (histogram series as their ``_bucket`` etc.)."""
    return {name for q in queries for name in re.findall(r"\brtml_[a-z0-9_]+", q.expr)}


def test_panel_queries_are_read_from_every_dashboard() -> None:
    """The parsing the integration test relies on (no servers)."""
    names = {path.stem for path in DASHBOARDS}
    assert {"platform-overview", "decision-api", "feature-pipeline", "models",
            "drift"} <= names
    queries = panel_queries()
    assert {q.dashboard for q in queries} == names
    assert set(EVENT_ONLY) <= metric_families(queries), "EVENT_ONLY names no panel metric"


class ScrapedServices(LoopServices):
    """The loop's services, each serving /metrics on its own port as a Prometheus job."""

    def __init__(self, env: LoopEnvironment, scenario: LoopScenario, prometheus: Any,
                 overrides: dict[str, dict[str, str]]) -> None:
        super().__init__(env, scenario)
        self.prometheus = prometheus
        self.overrides = overrides
        self.decision_url = ""

    def _service(self, name: str, module: str, env: dict[str, str]) -> ServiceProcess:
        port = free_port()
        # Job names as in deploy/prometheus/prometheus.yml: panels group by ``job``.
        self.prometheus.add_target(f"127.0.0.1:{port}", name, {"tier": "rtml"})
        return super()._service(name, module, {**env, "RTML_TELEMETRY_METRICS_PORT": str(port),
                                                **self.overrides.get(name, {})})

    def start_decision(self, cassandra: Any) -> ServiceProcess:
        """Start the decision API (returns at once: wait for ``/healthz`` when needed)."""
        port = free_port()
        self.decision_url = f"http://127.0.0.1:{port}"
        return self._service("decision", "rtml_decision", {
            "RTML_DECISION_HTTP_PORT": str(port),
            "RTML_DECISION_MODEL_NAME": self.env.model_name,
            "RTML_DECISION_REQUEST_TIMEOUT_MS": "2000",  # a busy 2-core machine, not a budget test
            "RTML_CASSANDRA_CONTACT_POINTS": cassandra.host,
            "RTML_CASSANDRA_PORT": str(cassandra.port),
        })

    def stop(self) -> None:
        """Stop every service at once (the loop's upstream-first order matters not here)."""
        with ThreadPoolExecutor(len(self.processes) or 1) as pool:
            list(pool.map(ServiceProcess.stop, self.processes.values()))


def _set_alias(services: ScrapedServices, alias: str, version: str) -> None:
    response = httpx.put(
        f"{services.registry_url}/v1/models/{services.env.model_name}/aliases/{alias}",
        json={"version": version, "actor": "test_dashboards", "reason": "dashboard test"},
        headers={"X-API-Key": services.api_key}, timeout=120)
    assert response.status_code == 200, f"{alias} v{version} refused: {response.text}"


def _decision_requests(services: ScrapedServices, data: Path, n: int) -> None:
    """Decide ``n`` payments of the scenario's last day's customers (features in Redis)."""
    rows = pq.read_table(data / "transactions.parquet").to_pylist()[-n:]
    start = SCENARIO.day_start(SCENARIO.n_days)
    bodies = [{"transaction_id": f"dash-{uuid.uuid4().hex[:12]}",
               "event_time": (start + timedelta(seconds=i)).isoformat(),
               "customer_id": str(row["customer_id"]), "terminal_id": str(row["terminal_id"]),
               "amount": round(row["tx_amount"] * (40 if i % 4 == 0 else 1), 2)}
              for i, row in enumerate(rows)]
    with httpx.Client(base_url=services.decision_url, timeout=30) as client:
        for body in [*bodies, bodies[0]]:  # the last one is an idempotent retry
            response = client.post("/v1/decisions", json=body)
            assert response.status_code == 200, response.text


def _malformed_transaction(bootstrap: str) -> None:
    """One record the feature pipeline must dead-letter (a real DecodeError)."""
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce("transactions", key=b"dashboards", value=b'{"not": "a transaction"}')
    assert producer.flush(10) == 0


def _missing(prometheus: Any, queries: list[PanelQuery]) -> tuple[list[PanelQuery], set[str]]:
    empty = [q for q in queries if not prometheus.query(q.expr)]
    absent = {name for name in metric_families(queries) - set(EVENT_ONLY)
              if not prometheus.query(f"count({name})")}
    return empty, absent


def test_every_dashboard_panel_returns_data(
        fresh_kafka_broker: Any, fresh_redis_server: Any, mlflow_server: Any, cassandra_server: Any,
        prometheus_server: Any, tmp_path: Path) -> None:
    queries = panel_queries()
    t0 = time.perf_counter()

    def mark(step: str) -> None:
        print(f"[dashboards] {time.perf_counter() - t0:6.1f} s {step}", file=sys.stderr)

    bootstrap = fresh_kafka_broker.bootstrap_servers
    env = LoopEnvironment(bootstrap_servers=bootstrap, redis_url=fresh_redis_server.url,
                          tracking_uri=mlflow_server.tracking_uri, work_dir=tmp_path,
                          model_name=f"dash-{uuid.uuid4().hex[:8]}")
    data = write_scenario_data(SCENARIO, tmp_path / "data")
    ensure_topics(bootstrap, all_topic_names(), replication_factor=1)
    mark("simulated")
    champion = train_champion(SCENARIO, data, env.tracking_uri, env.model_name)
    mark("champion trained")
    challenger = train_champion(dataclasses.replace(SCENARIO, champion_train_day=1), data,
                                env.tracking_uri, env.model_name)

    mark("challenger trained")
    services = ScrapedServices(env, SCENARIO, prometheus_server, overrides={
        # No retraining: it would only cost CPU here (a pending request is what we show).
        "retrain-worker": {"RTML_RETRAIN_WORKER_MIN_DAYS_AFTER_DRIFT": "60"},
        "shadow-auditor": {"RTML_SHADOW_AUDITOR_AUTO_PROMOTE": "false"},
    })
    try:
        services.start_registry(90)
        _set_alias(services, CHAMPION, champion)
        _set_alias(services, CHALLENGER, challenger)
        mark("registry up, aliases set")
        services.start_stream_services()
        decision = services.start_decision(cassandra_server)
        # Every decision of the scenario re-computed (feature-pipeline dashboard panels);
        # the decisions come last, so the watermarks pass them only once partitions idle.
        services._service("consistency-monitor", "rtml_consistency_monitor", {
            "RTML_CONSISTENCY_MONITOR_SAMPLE_RATE": "1",
            "RTML_CONSISTENCY_MONITOR_ALLOWED_LATENESS_S": "0",
            "RTML_CONSISTENCY_MONITOR_IDLE_PARTITION_S": "5"})
        mark("services started")
        sent = replay(data, ReplayOptions(label_delay=SCENARIO.label_delay, pending_labels=True,
                                          create_topics=False),
                      KafkaSettings(bootstrap_servers=bootstrap))
        mark("replayed")
        _malformed_transaction(bootstrap)
        services.check_alive()
        for name in services.processes:
            prometheus_server.wait_for_scrape(name, timeout_s=60)
        # Decisions once the replay is in Redis (their event times come after it).
        deadline = time.monotonic() + 120
        everything = sent.transactions + sent.labels + 1  # + the malformed record
        while not prometheus_server.query(
                f'sum(rtml_events_consumed_total{{job="feature-pipeline"}}) >= {everything}'):
            assert time.monotonic() < deadline, "the feature pipeline did not catch up"
            services.check_alive()
            time.sleep(2)
        mark("pipeline caught up")
        decision.wait_http(f"{services.decision_url}/healthz", 90)
        _decision_requests(services, data, 40)

        mark("decisions sent")
        deadline = time.monotonic() + 150
        empty, absent = _missing(prometheus_server, queries)
        while (empty or absent) and time.monotonic() < deadline:
            services.check_alive()
            time.sleep(3)
            empty, absent = _missing(prometheus_server, queries)
        mark("panels checked")
    finally:
        services.stop()
        mark("stopped")

    logs = ", ".join(str(p.log_path) for p in services.processes.values())
    assert not empty, ("panels without data:\n" + "\n".join(q.describe() for q in empty)
                       + f"\nlogs: {logs}")
    assert not absent, f"metrics no service exported: {sorted(absent)}; logs: {logs}"
