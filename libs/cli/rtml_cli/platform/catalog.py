"""What the platform runs: one declaration per service, its environment derived from the stack.

Every service is configured only through environment variables (each
service's README lists them), so a service here is its module, the
variables that point it at the local stack and at its neighbours, and how
to tell it is healthy. The stack's endpoints come from
:meth:`rtml_localstack.stack.Stack.client_env` (the same variables
``rtml stack env`` prints); ports of the platform's own HTTP APIs and
Prometheus endpoints are picked by ``rtml up`` and recorded in the spec, so
the supervisor, ``status`` and Prometheus all agree on them.

>>> names = [s.name for s in build_catalog(_example_ports(), {}, Path("/s"), Secrets("k" * 24,
...          "a" * 24))]
>>> names[0], names[-1]
('model-registry', 'consistency-monitor')
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

#: How a service proves it is healthy: its HTTP ``/healthz`` answers 200
#: (``http``); it is alive and its Prometheus endpoint answers (``metrics``);
#: or it is alive (``alive``, for a child without either).
HealthKind = Literal["http", "metrics", "alive"]

MODEL_NAME = "fraud-detector"
SUPERVISOR_JOB = "platform-supervisor"
TRAFFIC = "traffic"

#: Start order: the registry first (the retrain worker and the shadow
#: auditor call it), then the stream from its sinks upwards, the traffic
#: source (when asked for) last.
SERVICE_NAMES: tuple[str, ...] = (
    "model-registry", "decision-log-writer", "feature-pipeline", "scorer", "decision-api",
    "drift-monitor", "retrain-worker", "shadow-auditor", "consistency-monitor",
)

#: Stop order, upstream first, so nothing downstream stops while it is still
#: being fed; services of one tier stop together.
STOP_TIERS: tuple[tuple[str, ...], ...] = (
    (TRAFFIC,),
    ("decision-api",),
    ("feature-pipeline",),
    ("scorer",),
    ("decision-log-writer", "drift-monitor", "retrain-worker", "shadow-auditor",
     "consistency-monitor"),
    ("model-registry",),
)


@dataclass(frozen=True)
class PlatformPorts:
    """Ports ``rtml up`` chose: HTTP APIs and one Prometheus endpoint per service."""

    api: int
    registry: int
    auditor: int
    supervisor_metrics: int
    #: Service name -> its Prometheus endpoint port (``RTML_TELEMETRY_METRICS_PORT``).
    metrics: dict[str, int]


@dataclass(frozen=True)
class Secrets:
    """Keys generated per ``up``: the registry's write key (the retrain worker and
    the shadow auditor move aliases with it) and the decision API's admin key."""

    registry_api_key: str
    decision_admin_key: str


@dataclass(frozen=True)
class TrafficOptions:
    """The optional traffic source (``python -m rtml_cli.traffic``)."""

    rate: float
    speed: float
    data: Path
    #: ``now`` (mapped onto the wall clock) or ``data`` (the data set's own times from
    #: ``start_day``: continues a replayed history, e.g. the demo's, whose stream is in 2018).
    event_times: str = "now"
    start_day: int = 0

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"traffic rate must be > 0 transactions per second, got {self.rate}")
        if not self.speed > 0:
            raise ValueError(f"traffic speed must be > 0, got {self.speed}")
        if self.event_times not in ("now", "data"):
            raise ValueError(f"traffic event times must be now or data, got {self.event_times!r}")
        if self.start_day < 0:
            raise ValueError(f"traffic start day must be >= 0, got {self.start_day}")


@dataclass
class ServiceSpec:
    """One supervised child: what to run, with which environment, how to probe it."""

    name: str
    module: str
    env: dict[str, str]
    health: HealthKind
    args: list[str] = field(default_factory=list)
    #: HTTP port of its API (None: no API).
    port: int | None = None
    #: Its Prometheus endpoint (None: none).
    metrics_port: int | None = None
    #: Prometheus job name when scraped (None: not registered).
    job: str | None = None

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", self.module, *self.args]

    @property
    def health_url(self) -> str | None:
        """The URL whose 200 answer means healthy (None for ``alive``)."""
        if self.health == "http" and self.port is not None:
            return f"http://127.0.0.1:{self.port}/healthz"
        if self.health == "metrics" and self.metrics_port is not None:
            return f"http://127.0.0.1:{self.metrics_port}/metrics"
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ServiceSpec:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})


def metric_port_names() -> list[str]:
    """Services that get a Prometheus endpoint port: all but the traffic source (it has none)."""
    return list(SERVICE_NAMES)


def build_catalog(ports: PlatformPorts, stack_env: Mapping[str, str], state_dir: Path,
                  secrets: Secrets, traffic: TrafficOptions | None = None,
                  model_name: str = MODEL_NAME,
                  service_env: Mapping[str, str] | None = None) -> list[ServiceSpec]:
    """Every service with its environment; ``stack_env`` is the stack's client env, and
    ``service_env`` is set for every service (the served feature set's variables).

    Only the variables each service's README documents are set; everything
    else keeps the service's default. State the services keep on disk goes
    under ``<state_dir>/platform/data`` so ``rtml up`` after ``down`` resumes
    where they were.
    """
    data = state_dir / "platform" / "data"
    registry_url = f"http://127.0.0.1:{ports.registry}"

    def spec(name: str, module: str, env: dict[str, str], health: HealthKind,
             port: int | None = None, args: list[str] | None = None) -> ServiceSpec:
        metrics_port = ports.metrics.get(name)
        full_env = {**stack_env,
                    "RTML_KAFKA_CLIENT_ID": name,
                    "RTML_TELEMETRY_LOG_JSON": "false",
                    "RTML_TELEMETRY_METRICS_PORT": str(metrics_port or 0),
                    # MLflow's client retries a dead server for minutes by default.
                    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
                    **(service_env or {}),
                    **env}
        job = name if metrics_port is not None else None
        return ServiceSpec(name, module, full_env, health, list(args or []), port,
                           metrics_port, job)

    services = [
        spec("model-registry", "rtml_model_registry", {
            "RTML_MODEL_REGISTRY_HTTP_PORT": str(ports.registry),
            "RTML_MODEL_REGISTRY_API_KEY": secrets.registry_api_key,
            # The same audit log `rtml up` promoted the first champion through.
            "RTML_MODEL_REGISTRY_AUDIT_DB": str(state_dir / "model-registry" / "audit.sqlite"),
        }, "http", ports.registry),
        # The API's own writer thread is off: this one is supervised on its own.
        spec("decision-log-writer", "rtml_decision.log_writer", {}, "metrics"),
        spec("feature-pipeline", "rtml_feature_pipeline", {}, "metrics"),
        spec("scorer", "rtml_scorer", {"RTML_SCORER_MODEL_NAME": model_name}, "metrics"),
        spec("decision-api", "rtml_decision", {
            "RTML_DECISION_HTTP_PORT": str(ports.api),
            "RTML_DECISION_MODEL_NAME": model_name,
            "RTML_DECISION_LOG_WRITER": "false",
            "RTML_DECISION_ADMIN_API_KEY": secrets.decision_admin_key,
        }, "http", ports.api),
        spec("drift-monitor", "rtml_drift_monitor", {
            "RTML_DRIFT_MONITOR_MODEL_NAME": model_name,
            "RTML_DRIFT_MONITOR_STATE_DIR": str(data / "drift-monitor"),
        }, "metrics"),
        spec("retrain-worker", "rtml_retrain_worker", {
            "RTML_RETRAIN_WORKER_MODEL_NAME": model_name,
            "RTML_RETRAIN_WORKER_ARCHIVE_DIR": str(data / "retrain-worker"),
            "RTML_RETRAIN_WORKER_REGISTRY_URL": registry_url,
            "RTML_RETRAIN_WORKER_REGISTRY_API_KEY": secrets.registry_api_key,
        }, "metrics"),
        spec("shadow-auditor", "rtml_shadow_auditor", {
            "RTML_SHADOW_AUDITOR_MODEL_NAME": model_name,
            "RTML_SHADOW_AUDITOR_HTTP_PORT": str(ports.auditor),
            "RTML_SHADOW_AUDITOR_STATE_DIR": str(data / "shadow-auditor"),
            "RTML_SHADOW_AUDITOR_REPORT_DIR": str(data / "shadow-auditor" / "reports"),
            "RTML_SHADOW_AUDITOR_REGISTRY_URL": registry_url,
            "RTML_SHADOW_AUDITOR_REGISTRY_API_KEY": secrets.registry_api_key,
            # Every 15 s rather than the production minute: a local run is short, and
            # `rtml top` and the demo should show figures while someone is looking.
            "RTML_SHADOW_AUDITOR_EVALUATE_INTERVAL_S": "15",
        }, "http", ports.auditor),
        spec("consistency-monitor", "rtml_consistency_monitor", {}, "metrics"),
    ]
    if traffic is not None:
        services.append(spec(TRAFFIC, "rtml_cli.traffic", {}, "alive", args=[
            "--api-url", f"http://127.0.0.1:{ports.api}",
            "--bootstrap-servers", stack_env.get("RTML_KAFKA_BOOTSTRAP_SERVERS", ""),
            "--rate", f"{traffic.rate:g}", "--speed", f"{traffic.speed:g}",
            "--event-times", traffic.event_times, "--start-day", str(traffic.start_day),
            "--data", str(traffic.data)]))
    return services


def scrape_jobs(services: list[ServiceSpec]) -> dict[str, int]:
    """Prometheus job name -> metrics port, for the services that have both."""
    return {s.job: s.metrics_port for s in services
            if s.job is not None and s.metrics_port is not None}


def _example_ports() -> PlatformPorts:
    """Fixed ports for the doctest (never used to run anything)."""
    return PlatformPorts(api=8080, registry=8000, auditor=8005, supervisor_metrics=9100,
                         metrics={n: 9101 + i for i, n in enumerate(SERVICE_NAMES)})
