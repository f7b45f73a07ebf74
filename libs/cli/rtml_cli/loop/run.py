"""Run the closed loop: data → champion → six services → replay → graduation.

Every service runs as its own process with its own configuration, exactly as
it would in docker-compose; this module only starts them, feeds the stream
and watches the control topics (:mod:`rtml_cli.loop.timeline`).

The replay goes a day at a time at full speed. Services work in event time,
so how fast the replay runs changes nothing they compute — with one
exception that matters for a short run: the challenger can only shadow-score
transactions the scorer reaches *after* it went live. So the replay holds
once at ``hold_day`` until the challenger is in shadow (the retrain worker
needs labels up to about then); a real stream would just give the challenger
fewer transactions to be judged on. That hold is the only coupling between
the orchestrator and the services; everything else is the services talking
over Kafka and the registry's HTTP API.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from rtml_cli.loop.scenario import LoopScenario, write_scenario_data
from rtml_cli.loop.timeline import Entry, TimelineWatcher
from rtml_common.config import KafkaSettings
from rtml_common.events import DriftAlert, Event, ModelEvent, ModelEventKind, RetrainRequest
from rtml_common.kafka.admin import ensure_topics
from rtml_common.topics import all_topic_names
from rtml_localstack.console import make_console
from rtml_localstack.ports import free_port
from rtml_localstack.services import ServiceProcess
from rtml_models.aliases import CHALLENGER, CHAMPION

MODEL_NAME = "fraud-detector"


class LoopFailed(RuntimeError):
    """A step of the loop did not happen in time; the message says which and where to look."""


@dataclass(frozen=True)
class LoopEnvironment:
    """The servers the loop runs against (a local stack, or a test's fixtures)."""

    bootstrap_servers: str
    redis_url: str
    tracking_uri: str
    work_dir: Path
    #: Registered model the loop trains, scores and promotes.
    model_name: str = MODEL_NAME

    def client_env(self) -> dict[str, str]:
        return {"RTML_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
                "RTML_KAFKA_SESSION_TIMEOUT_MS": "6000",
                "RTML_REDIS_URL": self.redis_url,
                "RTML_MLFLOW_TRACKING_URI": self.tracking_uri,
                "RTML_TELEMETRY_LOG_JSON": "false"}


@dataclass(frozen=True)
class Milestone:
    """A step of the loop: what, when (wall clock) and the entry that proves it."""

    name: str
    entry: Entry


@dataclass
class LoopResult:
    """What the run did; ``milestones`` are in the order they must happen."""

    scenario: LoopScenario
    champion_before: str
    champion_after: str | None = None
    challenger: str | None = None
    milestones: list[Milestone] = field(default_factory=list)
    timeline: list[Entry] = field(default_factory=list)
    logs: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class LoopTimeouts:
    """Wall-clock limits for each wait (seconds); generous: the machine may be busy."""

    service_start: float = 90.0
    challenger: float = 240.0
    graduation: float = 300.0


def _is_alert(event: Event) -> bool:
    return isinstance(event, DriftAlert)


def _is_request(event: Event) -> bool:
    return isinstance(event, RetrainRequest)


def _alias_moved(alias: str, not_version: str | None = None) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        return (isinstance(event, ModelEvent) and event.alias == alias
                and event.version is not None and event.version != not_version
                and event.kind is ModelEventKind.ALIAS_SET)
    return match


#: MLflow's switch for the "View run ... at: <url>" lines it writes to stdout.
_SUPPRESS_URLS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


@contextmanager
def mlflow_output_to(log_file: Path) -> Iterator[None]:
    """Send what MLflow itself prints while training in this process to ``log_file``.

    MLflow logs to stderr through a handler of its own ("Waiting up to 300 seconds
    for model version to finish creation", ...) and writes run and experiment URLs
    straight to stdout; amid the loop's step lines they read as the loop's own
    output, or as errors. For the duration, the ``mlflow`` logger writes to
    ``log_file`` only (INFO and up) and the URLs are not printed (the run is in
    MLflow's UI); both are restored afterwards.
    """
    import mlflow  # noqa: F401  (configures its logger on import: do that before replacing it)

    log_file.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("mlflow")
    saved = (list(logger.handlers), logger.propagate, logger.level, os.environ.get(_SUPPRESS_URLS))
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    os.environ[_SUPPRESS_URLS] = "true"
    try:
        yield
    finally:
        handlers, logger.propagate, level, suppress = saved
        logger.handlers = handlers
        logger.setLevel(level)
        if suppress is None:
            os.environ.pop(_SUPPRESS_URLS, None)
        else:
            os.environ[_SUPPRESS_URLS] = suppress
        handler.close()


def train_champion(scenario: LoopScenario, data: Path, tracking_uri: str,
                   model_name: str) -> str:
    """Train and register the pre-drift champion (7/7/7 split from ``champion_train_day``)."""
    from rtml_training.config import TrainConfig
    from rtml_training.pipeline import train
    from rtml_training.split import SplitConfig

    start = scenario.day_start(scenario.champion_train_day).date()
    result = train(TrainConfig(data=data, name=model_name, tracking_uri=tracking_uri,
                               split=SplitConfig(train_start=start)))
    if result.model_version is None:
        raise LoopFailed("training registered no version")
    return str(result.model_version.version)


class LoopServices:
    """The six services as child processes, with one log file each."""

    def __init__(self, env: LoopEnvironment, scenario: LoopScenario) -> None:
        self.env = env
        self.scenario = scenario
        self.logs = env.work_dir / "logs"
        self.api_key = secrets.token_urlsafe(24)
        self.registry_port = free_port()
        self.auditor_port = free_port()
        self.registry_url = f"http://127.0.0.1:{self.registry_port}"
        self.auditor_url = f"http://127.0.0.1:{self.auditor_port}"
        self.processes: dict[str, ServiceProcess] = {}

    def _service(self, name: str, module: str, env: dict[str, str]) -> ServiceProcess:
        process = ServiceProcess(module, self.logs / f"{name}.log",
                                 {**self.env.client_env(), "RTML_KAFKA_CLIENT_ID": name, **env})
        self.processes[name] = process
        return process.start()

    def start_registry(self, timeout_s: float) -> None:
        state = self.env.work_dir / "model-registry"
        state.mkdir(parents=True, exist_ok=True)
        self._service("model-registry", "rtml_model_registry", {
            "RTML_MODEL_REGISTRY_HTTP_PORT": str(self.registry_port),
            "RTML_MODEL_REGISTRY_API_KEY": self.api_key,
            "RTML_MODEL_REGISTRY_AUDIT_DB": str(state / "audit.sqlite"),
            # Training-split metrics of models trained on different weeks are not comparable;
            # the shadow auditor compares them on the same live transactions instead.
            "RTML_MODEL_REGISTRY_MAX_METRIC_DROP": "1.0",
        }).wait_http(f"{self.registry_url}/healthz", timeout_s)

    def start_stream_services(self) -> None:
        scenario = self.scenario
        work = self.env.work_dir
        self._service("feature-pipeline", "rtml_feature_pipeline", {
            "RTML_FEATURE_PIPELINE_CONSUMER_GROUP": "loop-features"})
        self._service("scorer", "rtml_scorer", {
            "RTML_SCORER_MODEL_NAME": self.env.model_name,
            "RTML_SCORER_CONSUMER_GROUP": "loop-scorer",
            "RTML_SCORER_CHECKPOINT_INTERVAL_S": "0"})
        self._service("drift-monitor", "rtml_drift_monitor", {
            "RTML_DRIFT_MONITOR_MODEL_NAME": self.env.model_name,
            "RTML_DRIFT_MONITOR_CONSUMER_GROUP": "loop-drift",
            "RTML_DRIFT_MONITOR_STATE_DIR": str(work / "drift-monitor"),
            "RTML_DRIFT_MONITOR_START_AT":
                scenario.day_start(scenario.monitor_from_day).isoformat(),
            # ~1,000 payments a day here; the default (1,000) would skip quiet days.
            "RTML_DRIFT_MONITOR_MIN_WINDOW_EVENTS": "500",
        })
        self._service("retrain-worker", "rtml_retrain_worker", {
            "RTML_RETRAIN_WORKER_MODEL_NAME": self.env.model_name,
            "RTML_RETRAIN_WORKER_CONSUMER_GROUP": "loop-retrain",
            "RTML_RETRAIN_WORKER_ARCHIVE_DIR": str(work / "archive"),
            "RTML_RETRAIN_WORKER_REGISTRY_URL": self.registry_url,
            "RTML_RETRAIN_WORKER_REGISTRY_API_KEY": self.api_key,
            # Labels arrive a day after the payment here; test on the last 3 labelled days.
            "RTML_RETRAIN_WORKER_LABEL_MATURITY_DAYS": str(scenario.label_delay_days),
            "RTML_RETRAIN_WORKER_TEST_DAYS": "3",
            "RTML_RETRAIN_WORKER_MIN_DAYS_AFTER_DRIFT": "3",
            # A replay compresses days into seconds: write segments often so label time moves.
            "RTML_RETRAIN_WORKER_SEGMENT_MAX_EVENTS": "20000",
            "RTML_RETRAIN_WORKER_SEGMENT_MAX_AGE_S": "2",
        })
        self._service("shadow-auditor", "rtml_shadow_auditor", {
            "RTML_SHADOW_AUDITOR_MODEL_NAME": self.env.model_name,
            "RTML_SHADOW_AUDITOR_CONSUMER_GROUP": "loop-auditor",
            "RTML_SHADOW_AUDITOR_HTTP_PORT": str(self.auditor_port),
            "RTML_SHADOW_AUDITOR_STATE_DIR": str(work / "auditor"),
            "RTML_SHADOW_AUDITOR_REPORT_DIR": str(work / "reports"),
            "RTML_SHADOW_AUDITOR_REGISTRY_URL": self.registry_url,
            "RTML_SHADOW_AUDITOR_REGISTRY_API_KEY": self.api_key,
            "RTML_SHADOW_AUDITOR_AUTO_PROMOTE": "true",
            "RTML_SHADOW_AUDITOR_EVALUATE_INTERVAL_S": "3",
        })

    def check_alive(self) -> None:
        for process in self.processes.values():
            process.check_alive()

    def stop(self) -> None:
        # Upstream first, so nothing downstream stops while it is still being fed.
        for name in ("feature-pipeline", "scorer", "drift-monitor", "retrain-worker",
                     "shadow-auditor", "model-registry"):
            if name in self.processes:
                self.processes[name].stop()


@contextmanager
def _step(console: Console, text: str) -> Iterator[None]:
    started = time.perf_counter()
    console.print(f"[bold]{text}[/]", highlight=False)
    yield
    console.print(f"  [dim]done in {time.perf_counter() - started:.1f} s[/]")


def run_loop(env: LoopEnvironment, scenario: LoopScenario | None = None,
             console: Console | None = None, timeouts: LoopTimeouts | None = None,
             hold_day: int | None = None) -> LoopResult:
    """Run the whole loop; raises :class:`LoopFailed` naming the step that didn't happen."""
    import httpx

    from rtml_cli.demo_steps.promote import REQUEST_TIMEOUT_S
    from rtml_simulator.replay import ReplayOptions, replay

    scenario = scenario or LoopScenario()
    console = console or make_console()
    timeouts = timeouts or LoopTimeouts()
    hold_day = scenario.drift_day + 10 if hold_day is None else hold_day
    started = time.perf_counter()
    env.work_dir.mkdir(parents=True, exist_ok=True)
    kafka = KafkaSettings(bootstrap_servers=env.bootstrap_servers)

    with _step(console, f"simulate {scenario.n_days} days, card testing from day "
                        f"{scenario.drift_day}"):
        data = write_scenario_data(scenario, env.work_dir / "data")
        ensure_topics(env.bootstrap_servers, all_topic_names(), replication_factor=1)
    training_log = env.work_dir / "logs" / "training.log"
    with _step(console, f"train the champion on days before the pattern (MLflow's output: "
                        f"{training_log})"), mlflow_output_to(training_log):
        champion = train_champion(scenario, data, env.tracking_uri, env.model_name)
    result = LoopResult(scenario=scenario, champion_before=champion)
    services = LoopServices(env, scenario)
    result.logs = {name: services.logs / f"{name}.log" for name in (
        "model-registry", "feature-pipeline", "scorer", "drift-monitor", "retrain-worker",
        "shadow-auditor")}
    result.logs["training"] = training_log
    with ExitStack() as cleanup:
        cleanup.callback(services.stop)
        with _step(console, f"registry: champion -> v{champion} through the gate"):
            services.start_registry(timeouts.service_start)
            response = httpx.put(
                f"{services.registry_url}/v1/models/{env.model_name}/aliases/{CHAMPION}",
                json={"version": champion, "actor": "rtml loop", "reason": "pre-drift champion"},
                headers={"X-API-Key": services.api_key}, timeout=REQUEST_TIMEOUT_S)
            if response.status_code != 200:
                raise LoopFailed(f"champion v{champion} refused: {response.text}")
        watcher = TimelineWatcher(env.bootstrap_servers).start()
        cleanup.callback(watcher.stop)
        with _step(console, "start feature pipeline, scorer, drift monitor, retrain worker, "
                            "shadow auditor"):
            services.start_stream_services()
        with _step(console, f"replay days 0..{scenario.n_days - 1} (holding at day {hold_day} "
                            "until the challenger is in shadow)"):
            for day in range(scenario.n_days):
                last = day == scenario.n_days - 1
                replay(data, ReplayOptions(start_day=day, days=1, label_delay=scenario.label_delay,
                                           pending_labels=last, create_topics=False), kafka)
                services.check_alive()
                if day == hold_day:
                    entry = watcher.wait_for(_alias_moved(CHALLENGER), timeouts.challenger,
                                             services.check_alive)
                    if entry is None:
                        raise LoopFailed(_missing("the challenger in shadow", watcher, result))
        graduated = watcher.wait_for(_alias_moved(CHAMPION, not_version=champion),
                                     timeouts.graduation, services.check_alive)
        result.timeline = watcher.entries()
        _record_milestones(result, graduated)
        if graduated is None:
            raise LoopFailed(_missing("graduation (champion alias moved)", watcher, result))
    result.seconds = time.perf_counter() - started
    return result


def _record_milestones(result: LoopResult, graduated: Entry | None) -> None:
    alert = next((e for e in result.timeline if _is_alert(e.event)), None)
    request = next((e for e in result.timeline if _is_request(e.event)), None)
    shadow = next((e for e in result.timeline if _alias_moved(CHALLENGER)(e.event)), None)
    for name, entry in (("drift alert", alert), ("retrain request", request),
                        ("challenger in shadow", shadow), ("champion changed", graduated)):
        if entry is not None:
            result.milestones.append(Milestone(name, entry))
    if shadow is not None and isinstance(shadow.event, ModelEvent):
        result.challenger = shadow.event.version
    if graduated is not None and isinstance(graduated.event, ModelEvent):
        result.champion_after = graduated.event.version


def _missing(what: str, watcher: TimelineWatcher, result: LoopResult) -> str:
    seen = "; ".join(e.describe() for e in watcher.entries()) or "nothing"
    logs = ", ".join(str(p) for p in result.logs.values())
    return f"{what} did not happen in time. Seen on the control topics: {seen}. Logs: {logs}"
