"""The Kafka side of the detector: decoded batches in, alerts and retrain requests out.

:class:`DriftMonitor.handle` is the :class:`~rtml_common.kafka.consumer.ConsumerLoop`
handler for ``features`` and ``predictions``. Per batch it

1. switches to a newly installed champion reference, if the watcher loaded
   one (at a batch boundary, so a batch is never split across references);
   the new :class:`~rtml_drift_monitor.detector.DriftDetector` starts with
   empty windows: histograms binned in the old reference's bins cannot be
   compared with the new one's;
2. turns the records into arrays, each row tagged with its partition (the
   watermark is per partition, over the assigned partitions that are not
   idle: :meth:`DriftMonitor.active_partitions`) — feature vectors with
   ``revision > 0`` are re-publications of a transaction already counted and
   are skipped, and only scores of the
   champion version whose reference is loaded are compared with it;
3. feeds the detector and publishes what it decided through the loop's
   producer, which the loop flushes before it commits the input offsets.

After each batch the loop tells :meth:`DriftMonitor.consumed` the next
offsets; every ``checkpoint_interval_s`` (and when idle, and at stop) the
monitor flushes the producer and writes its checkpoint — windows, alert
states, retrain cooldown and those offsets — which :meth:`DriftMonitor.resume`
restores at start (see :mod:`rtml_drift_monitor.checkpoint`).

Malformed records never reach the handler: the loop dead-letters them to
``features.dlq`` / ``predictions.dlq`` with the validation error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from rtml_common.config import KafkaSettings
from rtml_common.events import DriftAlert, FeatureVector, Prediction, RetrainRequest, utcnow
from rtml_common.kafka.consumer import Record
from rtml_common.kafka.producer import EventProducer
from rtml_common.kafka.published import end_offsets, read_published
from rtml_common.topics import spec_for_event
from rtml_drift_monitor.alerts import HysteresisRule, RetrainPlanner, Thresholds
from rtml_drift_monitor.checkpoint import CheckpointFile, MonitorCheckpoint
from rtml_drift_monitor.config import RetrainPolicy, Settings
from rtml_drift_monitor.detector import DriftDetector, Outcome, to_datetime
from rtml_drift_monitor.metrics import DriftMetrics
from rtml_drift_monitor.reference import ChampionReference
from rtml_drift_monitor.windows import WindowSpec

logger = logging.getLogger(__name__)

FEATURES_TOPIC = spec_for_event(FeatureVector).name
PREDICTIONS_TOPIC = spec_for_event(Prediction).name
#: What the monitor publishes (read back after a restart: see :meth:`DriftMonitor.resume`).
OUTPUT_TOPICS = (spec_for_event(DriftAlert).name, spec_for_event(RetrainRequest).name)


def window_spec(settings: Settings) -> WindowSpec:
    return WindowSpec.from_seconds(settings.window_s, settings.sliding_window_s,
                                   settings.allowed_lateness_s, settings.min_window_events)


def thresholds(settings: Settings) -> Thresholds:
    return Thresholds(settings.psi_threshold, dict(settings.psi_thresholds),
                      dict(settings.tumbling_psi_thresholds), settings.js_threshold)


def hysteresis_rule(settings: Settings) -> HysteresisRule:
    return HysteresisRule(settings.raise_after_windows, settings.clear_after_windows,
                          settings.clear_ratio)


def retrain_planner(settings: Settings) -> RetrainPlanner:
    return RetrainPlanner(settings.retrain_policy is RetrainPolicy.ON_ALERT,
                          settings.retrain_cooldown_s * 1000, settings.training_lookback_s * 1000)


def build_detector(settings: Settings, champion: ChampionReference, planner: RetrainPlanner,
                   now: Callable[[], datetime] = utcnow) -> DriftDetector:
    """The detector the service runs for ``champion`` (also what tests drive directly)."""
    return DriftDetector(champion.reference, champion.model_name, champion.version,
                         window_spec(settings), thresholds(settings), hysteresis_rule(settings),
                         planner, now)


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class DriftMonitor:
    """Holds the current detector and turns consumed batches into published decisions."""

    def __init__(self, settings: Settings, producer: EventProducer,
                 metrics: DriftMetrics | None = None,
                 now: Callable[[], datetime] = utcnow,
                 clock: Callable[[], float] = time.monotonic,
                 checkpoints: CheckpointFile | None = None,
                 kafka: KafkaSettings | None = None) -> None:
        self.settings = settings
        self.producer = producer
        self.metrics = metrics or DriftMetrics()
        self.now = now
        #: Shared by every detector: the retrain cooldown is per model name.
        self.planner = retrain_planner(settings)
        self.detector: DriftDetector | None = None
        self._pending: ChampionReference | None = None
        self._installed_version: str | None = None
        self._lock = threading.Lock()
        self._warned_feature_set: set[str] = set()
        self.alerts_published = 0
        self.requests_published = 0
        self.windows_closed = 0
        self.events: dict[str, int] = {}
        #: The consumer's assigned (topic, partition)s; set by the service (None: any seen).
        self.assigned: Callable[[], set[tuple[str, int]]] | None = None
        self.clock = clock
        self._last_delivery: dict[tuple[str, int], float] = {}
        self._assigned_at: dict[tuple[str, int], float] = {}
        #: Where checkpoints go (None: none are written).
        self.checkpoints = checkpoints
        #: Next offset per input partition consumed (what a checkpoint covers).
        self.offsets: dict[tuple[str, int], int] = {}
        #: Where the output partitions ended at the last checkpoint.
        self.outputs: dict[tuple[str, int], int] = {}
        #: Alert / request ids published after the restored checkpoint (not published again).
        self.already_published: set[str] = set()
        self.suppressed = 0
        self.kafka = kafka or KafkaSettings()
        self._dirty = False
        self._last_checkpoint = clock()
        self.checkpoints_written = 0

    # -- reference ---------------------------------------------------------

    @property
    def version(self) -> str | None:
        """The champion version whose reference is installed (maybe not active until a batch)."""
        with self._lock:
            return self._installed_version

    def install(self, champion: ChampionReference) -> None:
        """Use ``champion``'s reference from the next batch on (thread-safe)."""
        with self._lock:
            self._pending = champion
            self._installed_version = champion.version
        logger.info("reference installed: %s", champion.describe())
        if champion.version.isdigit():
            self.metrics.reference_version.set(int(champion.version),
                                               {"model_name": champion.model_name})

    def _activate_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self.detector = build_detector(self.settings, pending, self.planner, self.now)

    # -- checkpoints -------------------------------------------------------

    def resume(self, checkpoint: MonitorCheckpoint) -> bool:
        """Restore ``checkpoint`` over the installed reference; True if its windows were.

        Call after the reference is installed and before consuming. The retrain
        cooldown is the model's and is restored whatever the version; windows
        and alert states only for the same champion version (other bins), and
        only then do the checkpoint's offsets say where to resume.
        """
        if checkpoint.model_name != self.settings.model_name:
            logger.warning("checkpoint of model %s ignored (watching %s)",
                           checkpoint.model_name, self.settings.model_name)
            return False
        self.planner.last_request_end_ms = checkpoint.last_request_end_ms
        self._activate_pending()
        if (self.detector is None or checkpoint.detector is None
                or checkpoint.model_version != self.detector.model_version):
            logger.info("checkpoint of champion v%s not restored (watching v%s): windows "
                        "start empty at the group's offsets", checkpoint.model_version,
                        self.detector.model_version if self.detector else None)
            return False
        try:
            self.detector.restore(checkpoint.detector)
        except (ValueError, KeyError, TypeError) as error:
            logger.error("checkpoint not restored (%s): windows start empty", error)
            self._activate_again()
            return False
        self.offsets = dict(checkpoint.offsets)
        self.outputs = dict(checkpoint.outputs)
        self.already_published = self._published_since(checkpoint.outputs)
        logger.info("restored checkpoint of v%s: offsets %s; %d alert/request ids published "
                    "after it", checkpoint.model_version, sorted(checkpoint.offsets.items()),
                    len(self.already_published))
        return True

    def _published_since(self, outputs: dict[tuple[str, int], int]) -> set[str]:
        """Ids of the alerts and requests on the output topics after ``outputs``."""
        ids: set[str] = set()
        for message in read_published(self.kafka, OUTPUT_TOPICS, outputs):
            try:
                body = orjson.loads(message.value() or b"null")
            except orjson.JSONDecodeError:
                continue
            if isinstance(body, dict) and body.get("model_name") == self.settings.model_name:
                found = body.get("alert_id") or body.get("request_id")
                if isinstance(found, str):
                    ids.add(found)
        return ids

    def _activate_again(self) -> None:
        """A fresh detector for the installed reference (after a failed restore)."""
        detector = self.detector
        if detector is not None:
            self.detector = DriftDetector(detector.reference, detector.model_name,
                                          detector.model_version, window_spec(self.settings),
                                          thresholds(self.settings),
                                          hysteresis_rule(self.settings), self.planner,
                                          self.now)

    def start_offset(self, topic: str, partition: int) -> int | None:
        """Where to resume a partition: the restored checkpoint's offset, else the group's."""
        return self.offsets.get((topic, partition))

    def consumed(self, next_offsets: dict[tuple[str, int], int]) -> None:
        """The loop handled (or dead-lettered) records up to ``next_offsets``."""
        self.offsets.update(next_offsets)
        self._dirty = True
        if self.clock() - self._last_checkpoint >= self.settings.checkpoint_interval_s:
            self.checkpoint()

    def on_idle(self) -> None:
        """Nothing to read: checkpoint what is not yet (a burst then silence), still at most
        once per interval (between two paced batches the loop is idle too)."""
        if self._dirty and (self.clock() - self._last_checkpoint
                            >= self.settings.checkpoint_interval_s):
            self.checkpoint()

    def checkpoint(self) -> None:
        """Flush the outputs, then write windows, alert states and offsets atomically."""
        if self.checkpoints is None:
            return
        self.producer.flush()  # every alert the covered records caused is on Kafka first
        self.outputs = end_offsets(self.kafka, OUTPUT_TOPICS, near=self.outputs)
        detector = self.detector
        size = self.checkpoints.save(MonitorCheckpoint(
            self.settings.model_name, detector.snapshot() if detector is not None else None,
            self.planner.last_request_end_ms, dict(self.offsets), dict(self.outputs)))
        self._dirty = False
        self._last_checkpoint = self.clock()
        self.checkpoints_written += 1
        logger.debug("checkpoint written: %d bytes", size)

    # -- handling ----------------------------------------------------------

    def _count(self, stream: str, outcome: str, n: int) -> None:
        if n:
            self.events[f"{stream}:{outcome}"] = self.events.get(f"{stream}:{outcome}", 0) + n
            self.metrics.events.add(n, {"stream": stream, "outcome": outcome})

    def handle(self, records: list[Record[Any]]) -> None:
        """One consumed batch (``features`` and ``predictions`` records, decoded)."""
        self._activate_pending()
        detector = self.detector
        if detector is None:
            for record in records:
                self._count(record.topic, "no_reference", 1)
            return
        now = self.clock()
        features: list[Record[Any]] = []
        scores: list[Record[Any]] = []
        for record in records:
            self._last_delivery[(record.topic, record.partition)] = now
            if record.topic == FEATURES_TOPIC:
                features.append(record)
            elif record.topic == PREDICTIONS_TOPIC:
                scores.append(record)
        outcome = Outcome()
        if features:
            outcome.extend(self._features(detector, features))
        if scores:
            outcome.extend(self._scores(detector, scores))
        self._publish(outcome)

    def active_partitions(self, topic: str) -> set[tuple[str, int]] | None:
        """Partitions of ``topic`` that must report before a window closes (None: any seen).

        The assigned ones, except those silent for ``idle_partition_s``
        (wall clock, counted from the assignment if they never delivered):
        a partition with no traffic must not hold every window open forever.
        """
        if self.assigned is None:
            return None
        now = self.clock()
        idle_s = self.settings.idle_partition_s
        active: set[tuple[str, int]] = set()
        for key in self.assigned():
            if key[0] != topic:
                continue
            since = self._last_delivery.get(key)
            if since is None:
                since = self._assigned_at.setdefault(key, now)
            if now - since <= idle_s:
                active.add(key)
        return active

    def _measured(self, topic: str, records: Sequence[Record[Any]]) -> list[Record[Any]]:
        """``records`` at or after ``start_at`` (the rest are counted, not measured)."""
        start = self.settings.start_at
        if start is None:
            return list(records)
        kept = [r for r in records if r.value.event_time >= start]
        self._count(topic, "before_start", len(records) - len(kept))
        return kept

    def _features(self, detector: DriftDetector, records: Sequence[Record[Any]]) -> Outcome:
        measured = self._measured(FEATURES_TOPIC, records)
        fresh = [r for r in measured if r.value.revision == 0]
        self._count(FEATURES_TOPIC, "revision", len(measured) - len(fresh))
        if not fresh:
            return Outcome()
        expected = detector.reference.feature_set_version
        version = fresh[0].value.feature_set_version
        if expected and version != expected and version not in self._warned_feature_set:
            self._warned_feature_set.add(version)
            logger.warning("feature vectors of feature set version %s are compared with a "
                           "reference of version %s (features matched by name)",
                           version, expected)
        names = detector.feature_names
        nan = float("nan")
        matrix = np.array([[r.value.features.get(name, nan) for name in names] for r in fresh],
                          dtype=np.float64).reshape(len(fresh), len(names))
        times = np.array([epoch_ms(r.value.event_time) for r in fresh], dtype=np.int64)
        sources: list[Hashable] = [(r.topic, r.partition) for r in fresh]
        late_before = detector.features.late
        outcome = detector.observe_features(times, matrix, sources,
                                            self.active_partitions(FEATURES_TOPIC))
        late = detector.features.late - late_before
        self._count(FEATURES_TOPIC, "late", late)
        self._count(FEATURES_TOPIC, "windowed", len(fresh) - late)
        return outcome

    def _scores(self, detector: DriftDetector, records: Sequence[Record[Any]]) -> Outcome:
        measured = self._measured(PREDICTIONS_TOPIC, records)
        mine = [r for r in measured if r.value.model_name == detector.model_name
                and r.value.model_version == detector.model_version]
        self._count(PREDICTIONS_TOPIC, "other_version", len(measured) - len(mine))
        if not mine or detector.scores is None:
            return Outcome()
        times = np.array([epoch_ms(r.value.event_time) for r in mine], dtype=np.int64)
        values = np.array([r.value.score for r in mine], dtype=np.float64)
        sources: list[Hashable] = [(r.topic, r.partition) for r in mine]
        late_before = detector.scores.late
        outcome = detector.observe_scores(times, values, sources,
                                          self.active_partitions(PREDICTIONS_TOPIC))
        late = detector.scores.late - late_before
        self._count(PREDICTIONS_TOPIC, "late", late)
        self._count(PREDICTIONS_TOPIC, "windowed", len(mine) - late)
        return outcome

    def _publish(self, outcome: Outcome) -> None:
        self.metrics.record(outcome)
        self.windows_closed += len(outcome.evaluations)
        for evaluation in outcome.evaluations:
            if evaluation.skip is None:
                worst = max(evaluation.measures.values(), key=lambda m: m.psi, default=None)
                logger.info("%s window %s..%s: %d events, max PSI %s",
                            evaluation.window.kind.value,
                            to_datetime(evaluation.window.start_ms).isoformat(),
                            to_datetime(evaluation.window.end_ms).isoformat(),
                            evaluation.events,
                            f"{worst.psi:.4f} ({worst.subject})" if worst else "-")
        for alert in outcome.alerts:
            if alert.alert_id in self.already_published:
                self.suppressed += 1  # published before a crash, from the replayed records
                continue
            self.producer.send(alert)
            self.alerts_published += 1
        for request in outcome.retrain_requests:
            if request.request_id in self.already_published:
                self.suppressed += 1
                continue
            self.producer.send(request)
            self.requests_published += 1
            logger.warning("retrain requested (%s): %s", request.request_id, request.reason)
