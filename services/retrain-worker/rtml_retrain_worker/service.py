"""Wiring: one consumer loop (archive + requests), a timer, and a training thread.

:func:`run` is what ``python -m rtml_retrain_worker`` calls, and what tests
call in-process.

* The **consumer loop** (:class:`rtml_common.kafka.consumer.ConsumerLoop`)
  reads the feature set's event and label topics (``transactions`` and
  ``labels`` for the handbook's and the payments example's sets) and
  ``retrain-requests`` in one group. Events are decoded as the set's schema's
  generated events by its lean decoder
  (:func:`rtml_common.schema_models.lean_decoder`) and archived with all their
  fields.
  Stream events go to the :class:`~.archive.Archive` buffer; the archive's
  partitions start where its durable segments end (``start_offsets``), not
  at the group's commits. A request is written to the
  :class:`~.requests.RequestBook` before the handler returns, so its offset
  is committed only once it is durable.
* The **timer** (every ``check_interval_s``) writes a segment whose oldest
  event is old enough, and asks the scheduler whether the pending burst can
  train (:func:`.plan.decide` against the archive's label clock).
* **Training** runs in its own thread, one at a time, so the consumer keeps
  polling (a training longer than ``max.poll.interval.ms`` would otherwise
  cost the group membership).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rtml_common.config import KafkaSettings, MlflowSettings
from rtml_common.events import Event, Label, RetrainRequest, Transaction
from rtml_common.kafka.consumer import ConsumerLoop, Decoder, LoopStats, Record
from rtml_common.schema_models import event_model, lean_decoder
from rtml_common.service_config import stop_on_signals
from rtml_common.topics import spec_for_event
from rtml_features.baseline import get_feature_set
from rtml_retrain_worker.archive import Archive, Segment, records_of
from rtml_retrain_worker.challenger import RegistryClient
from rtml_retrain_worker.config import Settings
from rtml_retrain_worker.metrics import WorkerMetrics
from rtml_retrain_worker.plan import Ready, SplitPolicy, Wait, decide
from rtml_retrain_worker.requests import Outcome, RequestBook, Status
from rtml_retrain_worker.retrain import RetrainOutcome, TrainingJob, retrain
from rtml_training.selection.search import SelectionConfig

logger = logging.getLogger(__name__)

#: The handbook's archived topics (a worker archives its feature set's, see ``RetrainWorker``).
TRANSACTIONS_TOPIC = spec_for_event(Transaction).name
LABELS_TOPIC = spec_for_event(Label).name
REQUESTS_TOPIC = spec_for_event(RetrainRequest).name
ARCHIVED_TOPICS = (TRANSACTIONS_TOPIC, LABELS_TOPIC)


@dataclass(frozen=True)
class TrainingRecord:
    """One finished training attempt, for the run summary and tests."""

    request_ids: tuple[str, ...]
    status: Status
    detail: str
    version: str | None
    seconds: float


@dataclass
class WorkerRun:
    """What a run did (the entry point's last log line, tests)."""

    loop: LoopStats
    trainings: list[TrainingRecord] = field(default_factory=list)
    segments: int = 0
    pending: int = 0


def policy_of(settings: Settings) -> SplitPolicy:
    return SplitPolicy(train_days=settings.train_days, gap_days=settings.gap_days,
                       test_days=settings.test_days,
                       label_maturity=timedelta(days=settings.label_maturity_days),
                       min_days_after_drift=settings.min_days_after_drift)


def selection_of(settings: Settings) -> SelectionConfig | None:
    """The model selection a retraining runs (None: train the configured parameters)."""
    if not settings.select:
        return None
    return SelectionConfig(metric=settings.select_metric, trials=settings.select_trials,
                           timeout_s=settings.select_timeout_s)


class RetrainWorker:
    """The archive, the request book and the training scheduler of one process."""

    def __init__(self, settings: Settings, mlflow: MlflowSettings,
                 registry: RegistryClient) -> None:
        self.settings = settings
        self.tracking_uri = mlflow.tracking_uri
        self.registry = registry
        self.metrics = WorkerMetrics()
        self.policy = policy_of(settings)
        #: The served feature set: its schema's events are archived, from its topics.
        self.feature_set = get_feature_set(settings.feature_set)
        self.event_schema = self.feature_set.schema
        self.events_topic = self.feature_set.source_topic
        self.labels_topic = self.feature_set.label_topic
        self.archived_topics = (self.events_topic, self.labels_topic)
        retention = timedelta(days=settings.retention_days) if settings.retention_days else None
        self.archive = Archive(settings.archive_dir, settings.segment_max_events,
                               settings.segment_max_age_s, retention,
                               on_segment=self._on_segment, event_schema=self.event_schema)
        self.book = RequestBook.open(settings.archive_dir, settings.model_name)
        self.trainings: list[TrainingRecord] = []
        self.segments_written = 0
        self._training: threading.Thread | None = None
        self._lock = threading.Lock()
        self._schedule_lock = threading.Lock()
        self._retry_at = 0.0
        self._last_wait: str | None = None
        pending = self.book.pending()
        self.metrics.pending.set(len(pending))
        if pending:
            logger.info("%d retrain request(s) pending from before the restart: %s",
                        len(pending), ", ".join(e.request.request_id for e in pending))

    # -- consumer side -----------------------------------------------------

    def start_offset(self, topic: str, partition: int) -> int | None:
        """Archived topics resume after their newest segment; requests at the group's commit."""
        if topic in self.archived_topics:
            return self.archive.resume_offset(topic, partition)
        return None

    def handle(self, records: list[Record[Any]]) -> None:
        """The loop's batch handler: requests to the book (durably), events to the archive."""
        requests = [r.value for r in records if r.topic == REQUESTS_TOPIC]
        if requests:
            for request, outcome in self.book.record(requests):
                self.metrics.requests.add(1, {"outcome": outcome.value})
                if outcome is Outcome.NEW:
                    logger.info("retrain request %s for %s: %s (alerts %s, data %s..%s)",
                                request.request_id, request.model_name, request.reason,
                                ",".join(request.alert_ids) or "-", request.data_start,
                                request.data_end)
                else:
                    logger.info("retrain request %s %s", request.request_id, outcome.value)
            self.metrics.pending.set(len(self.book.pending()))
        archived = self.archived_topics
        self.archive.add(records_of([r for r in records if r.topic in archived]))

    def _on_segment(self, segment: Segment) -> None:
        self.segments_written += 1
        self.metrics.segments.add(1, {"kind": segment.kind})
        self.metrics.archived.add(segment.rows, {"kind": segment.kind})

    # -- scheduling --------------------------------------------------------

    @property
    def training(self) -> bool:
        with self._lock:
            return self._training is not None and self._training.is_alive()

    def tick(self) -> Ready | Wait | None:
        """Write a due segment, then start a training if the pending burst is ready."""
        self.archive.flush_if_due()
        return self.schedule()

    def schedule(self) -> Ready | Wait | None:
        """Start training the pending burst if its labels allow (None: nothing to decide)."""
        with self._schedule_lock:  # the timer and an idle exit's drain must not both start one
            return self._schedule()

    def _schedule(self) -> Ready | Wait | None:
        pending = self.book.pending()
        self.metrics.pending.set(len(pending))
        if not pending or self.training or time.monotonic() < self._retry_at:
            return None
        state = self.archive.state()
        decision = decide([e.request for e in pending], state.label_clock, self.policy)
        if isinstance(decision, Wait):
            lag = ((decision.until - state.label_clock).total_seconds()
                   if state.label_clock is not None else 0.0)
            self.metrics.label_lag.set(max(lag, 0.0))
            if decision.reason != self._last_wait:
                logger.info("%d request(s) wait: %s", len(pending), decision.reason)
                self._last_wait = decision.reason
            return decision
        self.metrics.label_lag.set(0.0)
        self._last_wait = None
        job = TrainingJob(
            model_name=self.settings.model_name,
            requests=tuple(e.request for e in pending), plan=decision,
            feature_set=self.settings.feature_set, tracking_uri=self.tracking_uri,
            experiment=self.settings.experiment,
            xgb_params=tuple(sorted(self.settings.xgb_params.items())),
            holdout_rows=self.settings.holdout_rows,
            selection=selection_of(self.settings),
            calibration=self.settings.calibration)
        logger.info("training %s for request(s) %s: %s, labels as of %s",
                    job.model_name, ", ".join(job.request_ids), decision.split.describe(),
                    decision.as_of.isoformat())
        with self._lock:
            self._training = threading.Thread(target=self._run_job, args=(job,),
                                              name="retrain", daemon=True)
            self._training.start()
        return decision

    def wait_for_training(self, timeout_s: float | None = None) -> bool:
        """Join a running training; False if it is still running after ``timeout_s``."""
        with self._lock:
            thread = self._training
        if thread is None:
            return True
        thread.join(timeout_s)
        return not thread.is_alive()

    def _run_job(self, job: TrainingJob) -> None:
        started = time.perf_counter()
        ids = job.request_ids
        try:
            outcome = retrain(job, self.archive, self.registry)
        except ValueError as exc:  # the data does not allow this split: retrying can't help
            self._finish(job, Status.FAILED, f"training failed: {exc}", None, started, "failed")
            return
        except Exception as exc:  # MLflow down, a bug: retried a bounded number of times
            detail = f"training attempt failed: {type(exc).__name__}: {exc}"
            attempts = self.book.note_failure(ids, detail)
            logger.exception("training for %s failed (attempt %d/%d)", ", ".join(ids), attempts,
                             self.settings.training_attempts)
            self.metrics.trainings.add(1, {"outcome": "error"})
            if attempts >= self.settings.training_attempts:
                self._finish(job, Status.FAILED, detail, None, started, "failed")
            else:
                self._retry_at = time.monotonic() + self.settings.check_interval_s * 2 ** attempts
            return
        self._finished(job, outcome, started)

    def _finished(self, job: TrainingJob, outcome: RetrainOutcome, started: float) -> None:
        self.metrics.last_version.set(int(outcome.version) if outcome.version.isdigit() else 0)
        m = outcome.result.metrics
        figures = f"AUC {m.auc:.3f}, AP {m.ap:.3f}, CP@{m.k} {m.cp_at_k:.3f}"
        if outcome.alias.ok:
            detail = f"version {outcome.version} is the challenger ({figures})"
            self._finish(job, Status.DONE, detail, outcome.version, started, "shadowed")
        else:
            detail = (f"registered version {outcome.version} ({figures}) but the registry did "
                      f"not make it the challenger (HTTP {outcome.alias.status}): "
                      f"{outcome.alias.detail}")
            self._finish(job, Status.FAILED, detail, outcome.version, started,
                         "refused" if outcome.alias.refused else "failed",
                         reason=outcome.alias.reason)

    def _finish(self, job: TrainingJob, status: Status, detail: str, version: str | None,
                started: float, outcome: str, reason: str = "") -> None:
        seconds = time.perf_counter() - started
        self.book.finish(job.request_ids, status, detail, version)
        attributes = {"outcome": outcome, **({"reason": reason} if reason else {})}
        self.metrics.trainings.add(1, attributes)
        self.metrics.training_seconds.record(seconds)
        self.metrics.pending.set(len(self.book.pending()))
        log = logger.info if status is Status.DONE else logger.error
        log("request(s) %s %s after %.1f s: %s", ", ".join(job.request_ids), status.value,
            seconds, detail)
        self.trainings.append(TrainingRecord(tuple(job.request_ids), status, detail, version,
                                             seconds))

    def drain(self, stop: threading.Event) -> None:
        """Before an idle exit: write the buffer and train whatever is ready now."""
        self.archive.flush()
        while not stop.is_set():
            self.wait_for_training()
            if not isinstance(self.schedule(), Ready):
                if time.monotonic() < self._retry_at:  # a failed attempt waits for its retry
                    stop.wait(self._retry_at - time.monotonic())
                    continue
                break
        self.wait_for_training()


def run(settings: Settings | None = None, kafka: KafkaSettings | None = None,
        mlflow: MlflowSettings | None = None, max_idle_s: float | None = None,
        install_signal_handlers: bool = True, stop: threading.Event | None = None,
        registry: RegistryClient | None = None,
        on_worker: Callable[[RetrainWorker], None] | None = None,
        stop_grace_s: float = 30.0) -> WorkerRun:
    """Archive and retrain until stopped (SIGTERM, ``stop``) or idle for ``max_idle_s``."""
    settings = settings or Settings()
    kafka = kafka or KafkaSettings()
    mlflow = mlflow or MlflowSettings()
    stop = stop or threading.Event()
    registry = registry or RegistryClient(settings.registry_url, settings.registry_api_key,
                                          settings.registry_timeout_s, settings.registry_attempts)
    worker = RetrainWorker(settings, mlflow, registry)
    schema = worker.event_schema
    topics: dict[str, type[Event]] = {worker.events_topic: event_model(schema),
                                      worker.labels_topic: Label,
                                      REQUESTS_TOPIC: RetrainRequest}
    decoders: dict[str, Decoder] = {worker.events_topic: lean_decoder(schema)}
    loop = ConsumerLoop(topics, settings.consumer_group, worker.handle, kafka,
                        start_offsets=worker.start_offset, decoders=decoders)

    if install_signal_handlers:
        def stop_all() -> None:
            stop.set()
            loop.stop()

        stop_on_signals(stop_all, logger)

    def timer() -> None:
        while not stop.wait(settings.check_interval_s):
            try:
                worker.tick()
            except Exception:  # a disk or registry hiccup must not end the timer
                logger.exception("periodic check failed")

    def stop_loop_when_asked() -> None:
        stop.wait()
        loop.stop()

    threading.Thread(target=stop_loop_when_asked, name="stop-watch", daemon=True).start()
    timer_thread = threading.Thread(target=timer, name="retrain-timer", daemon=True)
    timer_thread.start()
    if on_worker is not None:
        on_worker(worker)
    stats = loop.run(max_idle_s=max_idle_s)
    idle_exit = not stop.is_set()
    try:
        if idle_exit:
            worker.drain(stop)
        else:
            worker.archive.flush()
            if not worker.wait_for_training(stop_grace_s):
                logger.warning("stopping during a training: its request(s) stay pending and "
                               "are trained after the restart")
    finally:
        stop.set()
        timer_thread.join(settings.check_interval_s + 5)
        registry.close()
    logger.info("archive: %s", worker.archive.state())
    return WorkerRun(stats, list(worker.trainings), worker.segments_written,
                     len(worker.book.pending()))

