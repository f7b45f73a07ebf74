"""Building the running service from settings: every collaborator, started and stopped.

Kept apart from ``__main__`` so the benchmark and multi-worker uvicorn
(:func:`app_from_environment`, a factory each worker process calls) build
exactly what ``python -m rtml_decision`` builds.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI

from rtml_common.config import CassandraSettings, KafkaSettings, MlflowSettings, RedisSettings
from rtml_common.kafka.producer import EventProducer
from rtml_decision.active_rules import ActiveRules
from rtml_decision.api import create_app
from rtml_decision.canary import CanaryRouter
from rtml_decision.config import Settings
from rtml_decision.decision_log.base import DecisionLog
from rtml_decision.decision_log.cassandra.store import DEFAULT_TABLE
from rtml_decision.engine import DecisionEngine
from rtml_decision.generic_request import GenericRequestStore
from rtml_decision.limits import Limits
from rtml_decision.log_writer import GROUP_ID, DecisionLogWriter
from rtml_decision.metrics import DecisionMetrics
from rtml_decision.outputs import DecisionPublisher
from rtml_decision.request_model import check_servable, generic_path
from rtml_decision.request_store import RequestStore
from rtml_decision.rule_store import RuleStore
from rtml_decision.rule_sync import RuleSync
from rtml_decision.rule_worker import RuleWorker
from rtml_decision.rules import request_inputs
from rtml_decision.watcher import ModelWatcher
from rtml_features.baseline import get_feature_set
from rtml_models.aliases import CHAMPION
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.serving import ServingModels

logger = logging.getLogger(__name__)

#: The request never waits for Kafka (records are queued, a thread flushes
#: every second), so a longer linger costs no latency and batches more
#: records per produce request: less CPU in librdkafka and in the broker.
PRODUCER_OVERRIDES = {"linger.ms": 50}


@dataclass
class Service:
    """The engine, its background threads and the app serving it."""

    settings: Settings
    engine: DecisionEngine
    rules: ActiveRules
    publisher: DecisionPublisher
    watcher: ModelWatcher | None
    cassandra: CassandraSettings | None
    metrics: DecisionMetrics
    decision_log: DecisionLog | None = None
    writer: DecisionLogWriter | None = None
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    log_table: str = DEFAULT_TABLE
    log_group: str = GROUP_ID
    #: Follows the shared active rule set (None: this process's rules are its own).
    rule_sync: RuleSync | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    #: Orders the log opener's hand-over with :meth:`close`: a Cassandra connection that
    #: completes after shutdown began is closed, never turned into a writer nobody stops.
    _opening: threading.Lock = field(default_factory=threading.Lock)
    #: Lifespans running now. A server runs one; a test harness may nest another inside
    #: (schemathesis' ASGI transport within a TestClient): only the first starts the
    #: threads and clients, only the last to end stops them.
    _lifespans: int = 0

    @property
    def limits(self) -> Limits:
        return Limits.from_settings(self.settings)

    @property
    def rule_worker(self) -> RuleWorker:
        if self._rule_worker is None:
            self._rule_worker = RuleWorker(self.settings.rules_validation_timeout_s,
                                           self.settings.backtest_timeout_s,
                                           self.engine.rule_inputs)
        return self._rule_worker

    _rule_worker: RuleWorker | None = None

    def app(self) -> FastAPI:
        app = create_app(self.engine, self.rules, self.settings.admin_api_key,
                         decision_log=lambda: self.decision_log, metrics=self.metrics,
                         limits=self.limits, worker=self.rule_worker,
                         rule_store=self.rule_sync.store if self.rule_sync else None)
        service = self

        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            service.start()
            try:
                yield
            finally:
                service.close()

        app.router.lifespan_context = lifespan
        return app

    def start(self) -> None:
        with self._opening:
            self._lifespans += 1
            if self._lifespans > 1:
                return
        # Everything loaded so far (MLflow, pandas, the models: ~1M objects) lives as
        # long as the process; frozen, the collector stops rescanning it, and
        # its full collections stop pausing requests for tens of milliseconds.
        gc.collect()
        gc.freeze()
        self.publisher.start()
        if self.watcher is not None:
            self.watcher.start()
        if self.rule_sync is not None:
            self.rule_sync.start()
        if self.cassandra is not None:
            threading.Thread(target=self._open_log, name="decision-log-open",
                             daemon=True).start()

    def _open_log(self) -> None:
        """Connect to Cassandra, retrying: decisions wait on Kafka meanwhile."""
        from rtml_decision.decision_log.cassandra import CassandraDecisionLog

        assert self.cassandra is not None
        delay = 0.5
        while not self._stop.is_set():
            try:
                log = CassandraDecisionLog.from_settings(self.cassandra, self.log_table)
            except Exception as error:
                logger.warning("decision log unavailable, retrying in %.1fs: %r", delay, error)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            with self._opening:
                if self._stop.is_set():  # shut down while connecting
                    log.close()
                    return
                self.decision_log = log
                if self.settings.log_writer:
                    self.writer = DecisionLogWriter(log, self.kafka, self.log_group,
                                                    metrics=self.metrics)
                    self.writer.start()
            return

    def close(self) -> None:
        with self._opening:
            self._lifespans = max(0, self._lifespans - 1)
            if self._lifespans:
                return
            self._stop.set()
        if self.writer is not None:
            self.writer.stop()
        if self.watcher is not None:
            self.watcher.stop()
        if self.rule_sync is not None:
            self.rule_sync.stop()
            self.rule_sync.store.close()
        self.publisher.close()
        self.engine.store.close()  # after the last request: its idempotency write is queued
        if self.decision_log is not None:
            self.decision_log.close()


def build_service(settings: Settings, kafka: KafkaSettings, redis: RedisSettings,
                  mlflow: MlflowSettings, cassandra: CassandraSettings | None,
                  watch_models: bool = True, log_table: str = DEFAULT_TABLE,
                  log_group: str = GROUP_ID) -> Service:
    """Every collaborator of the service, not yet started.

    The rules are the shared active set when one is stored (validated again),
    else the configured file; Redis unreachable at start-up leaves the file's
    rules until the sync reaches it.
    """
    feature_set = get_feature_set(settings.feature_set)
    check_servable(feature_set)  # before anything connects: the reason, at start-up
    inputs = request_inputs(feature_set.schema, feature_set.names, feature_set.name)
    metrics = DecisionMetrics()
    rules = ActiveRules.from_paths(settings.rules_path, settings.fallback_rules_path, inputs)
    rules.on_change = lambda state: metrics.rules_revision(state.revision)
    metrics.rules_revision(0)
    router = CanaryRouter(settings.canary_weights)
    registry = MlflowRegistry(mlflow.tracking_uri)
    serving = ServingModels(registry, settings.model_name,
                            with_shadows=any(arm != CHAMPION for arm in router.arms))
    try:
        serving.refresh()
    except Exception as error:  # registry down: answer degraded until the watcher loads one
        logger.warning("no model loaded yet (%r): answering degraded meanwhile", error)
    budget_s = settings.request_timeout_ms / 1000
    store_type = GenericRequestStore if generic_path(feature_set) else RequestStore
    store = store_type.from_url(redis.url, feature_set, settings.idempotency_ttl_s,
                                timeout_s=min(redis.socket_timeout_s, budget_s))
    publisher = DecisionPublisher(EventProducer(kafka, **PRODUCER_OVERRIDES), metrics,
                                  new_producer=lambda: EventProducer(kafka, **PRODUCER_OVERRIDES))
    engine = DecisionEngine(store=store, serving=serving, rules=rules, router=router,
                            feature_set=feature_set, publisher=publisher, metrics=metrics,
                            timeout_ms=settings.request_timeout_ms,
                            top_contributions=settings.top_contributions,
                            canary_key=settings.canary_key,
                            explain_approvals=settings.contributions == "all")
    watcher = ModelWatcher(serving, kafka) if watch_models else None
    service = Service(settings, engine, rules, publisher, watcher, cassandra, metrics,
                      kafka=kafka, log_table=log_table, log_group=log_group)
    rule_store = RuleStore.from_url(redis.url, settings.rules_key_prefix,
                                    timeout_s=redis.socket_timeout_s)
    service.rule_sync = RuleSync(rules, rule_store, service.rule_worker.validate_blocking,
                                 metrics, settings.rules_refresh_interval_s)
    service.rule_sync.sync("start-up")
    return service


def _worker_metrics_port(base: int, workers: int) -> int:
    """This worker's Prometheus port: ``base + i`` for worker ``i``, the first one free.

    uvicorn names its workers ``SpawnProcess-<n>`` in start order, which gives
    the preferred offset; a restarted worker probes for the port its
    predecessor released.
    """
    if not base:
        return 0
    name = multiprocessing.current_process().name
    number = name.rsplit("-", 1)[-1]
    first = (int(number) - 1) % workers if number.isdigit() else 0
    for offset in [first, *(o for o in range(workers) if o != first)]:
        with socket.socket() as probe:
            try:
                probe.bind(("", base + offset))
            except OSError:
                continue
        return base + offset
    return 0


def app_from_environment() -> FastAPI:
    """The app of one uvicorn worker (``RTML_DECISION_WORKERS`` > 1), built from the environment.

    Each worker loads its own models and rule sets (the shared active set when
    one is stored, see :mod:`rtml_decision.rule_sync`), has its own Redis and
    Kafka clients and serves Prometheus metrics on its own port
    (``RTML_TELEMETRY_METRICS_PORT`` + worker index).
    """
    from rtml_common.config import TelemetrySettings
    from rtml_common.service_config import load_settings
    from rtml_common.telemetry import init_telemetry
    from rtml_decision import SERVICE_NAME
    from rtml_decision.config import ENV_PREFIX, SHARED_SETTINGS_USED

    settings, _shared = load_settings(Settings, SHARED_SETTINGS_USED, ENV_PREFIX)
    telemetry = TelemetrySettings()
    port = _worker_metrics_port(telemetry.metrics_port, settings.workers)
    init_telemetry(SERVICE_NAME, telemetry.model_copy(update={"metrics_port": port}))
    service = build_service(settings, KafkaSettings(), RedisSettings(), MlflowSettings(),
                            CassandraSettings())
    return service.app()
