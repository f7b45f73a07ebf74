"""The scoring step: one consumed batch of ``features`` and ``labels`` in, outputs out.

Per batch, in this order (see docs/scorer.md for the why of each):

1. Take the serving snapshot **once** (:attr:`ServingModels.current`): a hot
   reload lands between batches, never inside one, and every output names
   the version that produced it.
2. Build the champion's input matrix (feature names in the model's order);
   a vector lacking a feature is dead-lettered with the names it lacks.
3. Score with the champion — ``predict`` on the whole micro-batch when
   records queued up, ``predict_one`` when the batch is a single row — and
   publish ``predictions``. Nothing before this point has side effects, so
   the consumer loop may retry a failed batch without duplicating output;
   nothing after it raises.
4. Only then the shadows, each on its deterministic sample and inside its
   own guard (exception, non-finite / out-of-range score, or a batch over
   the latency budget is a failure; ``shadow_failure_limit`` in a row
   detach it). Champion outputs of the batch are already queued, so a
   shadow can delay the *next* batch by at most its budget, and only until
   it is detached.
5. Cache the vectors online models will learn from, hold the batch's
   labels, and learn those the stream's event time has reached
   (score-then-learn; :mod:`.online`). Checkpoint online models when due.

Traces: a vector whose ``features`` record carries a W3C ``traceparent``
gets a ``score`` span (child of the feature step's span, timed by its
batch's scoring) and its prediction and shadow scores carry that span's
context (:func:`rtml_common.tracing.record_spans`); untraced vectors cost one
header scan.

Outputs already published for a replayed input (the scorer crashed or lost the
partition after publishing, before committing) are not published again: the
:class:`~rtml_scorer.republish.PublicationLedger` read them back when the
partition was assigned, and each is suppressed once.

Revisions (``revision > 0``: a late event corrected a vector) are not
re-scored — the decision was taken on the first vector, and scoring twice
would publish two predictions for one transaction and version — but they
refresh the cached row an online model learns from.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from opentelemetry import trace

from rtml_common.events import FeatureVector, Label, ModelRole
from rtml_common.kafka.consumer import Record
from rtml_common.kafka.dead_letter import dead_letter_headers
from rtml_common.kafka.producer import EventProducer
from rtml_common.serde import encode
from rtml_common.topics import dead_letter_topic, spec_for_event
from rtml_common.tracing import TraceHeaders, record_spans
from rtml_features.rows import epoch_ms
from rtml_models.base import F64, OnlineModel, ScoringModel
from rtml_models.serving import ServedModel, ServingModels, Snapshot
from rtml_scorer.checkpoint import Checkpointer
from rtml_scorer.config import Settings
from rtml_scorer.decoding import ScoringVector
from rtml_scorer.guard import ShadowGuard
from rtml_scorer.matrix import build_matrix
from rtml_scorer.metrics import ScorerMetrics, score_sample
from rtml_scorer.online import OnlineLearner
from rtml_scorer.outputs import (
    PREDICTION_HEADERS,
    PREDICTIONS_TOPIC,
    SHADOW_HEADERS,
    SHADOW_TOPIC,
    Vector,
    output_heads,
    predictions_json,
    shadow_scores_json,
)
from rtml_scorer.republish import PublicationLedger
from rtml_scorer.sampling import ShadowSampler

logger = logging.getLogger(__name__)

FEATURES_TOPIC = spec_for_event(FeatureVector).name
LABELS_TOPIC = spec_for_event(Label).name
#: How long a batch waits for a champion to appear before its vectors are dead-lettered.
CHAMPION_WAIT_S = 30.0
_CHAMPION = ModelRole.CHAMPION.value
_SHADOW = ModelRole.SHADOW.value
#: What the consumer loop hands over for ``features``: the lean decoder's
#: :class:`ScoringVector`, or a ``FeatureVector`` (other decoders, tests).
_VECTOR_TYPES = (ScoringVector, FeatureVector)


def _without(skip: set[int], keys: list[bytes], values: list[bytes],
             traces: dict[int, TraceHeaders]
             ) -> tuple[list[bytes], list[bytes], dict[int, TraceHeaders]]:
    """Outputs minus the indices in ``skip``, trace headers re-indexed to what is left."""
    keep = [i for i in range(len(values)) if i not in skip]
    return ([keys[i] for i in keep], [values[i] for i in keep],
            {n: traces[i] for n, i in enumerate(keep) if i in traces})


def _keys(records: Sequence[Record[Vector]]) -> list[bytes]:
    """Output keys: the input's key (the customer id), or the customer id if it had none."""
    return [r.key or r.value.customer_id.encode() for r in records]


@dataclass(frozen=True, slots=True)
class _Outputs:
    """Per scored record, its output key, the opening of its outputs' JSON, trace headers."""

    keys: list[bytes]
    heads: list[bytes]
    #: Record index -> the trace headers of its outputs (traced records only).
    traces: dict[int, TraceHeaders]


class ShadowFailure(Exception):
    """A shadow's batch result is unusable; ``reason`` is the metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def timed_predict(model: ScoringModel, matrix: F64) -> tuple[F64, float]:
    """Scores and the per-row compute time (s): one-row batches take the single-row path."""
    started = time.perf_counter()
    if len(matrix) == 1:
        scores = np.array([model.predict_one(matrix[0].tolist())], dtype=np.float64)
    else:
        scores = np.asarray(model.predict(matrix), dtype=np.float64)
    elapsed = time.perf_counter() - started
    if scores.shape != (len(matrix),):
        raise ValueError(f"{len(matrix)} rows gave {scores.shape} scores")
    return scores, elapsed / max(1, len(matrix))


def invalid_scores(scores: F64) -> npt.NDArray[np.bool_]:
    """Mask of scores that are not finite probabilities."""
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(scores) | (scores < 0.0) | (scores > 1.0)


class Scorer:
    """Scores batches from the consumer loop; see the module docstring."""

    def __init__(self, settings: Settings, serving: ServingModels, producer: EventProducer,
                 group_id: str, checkpointer: Checkpointer | None = None,
                 stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.serving = serving
        self.producer = producer
        self.group_id = group_id
        self.checkpointer = checkpointer
        self.stop_event = stop or threading.Event()
        self.sampler = ShadowSampler(settings.shadow_sample_percent,
                                     settings.shadow_sample_percents)
        self.guard = ShadowGuard(settings.shadow_failure_limit)
        self.learner = OnlineLearner(settings.feature_cache_size,
                                     int(settings.feature_cache_max_age_s * 1000),
                                     settings.label_buffer_size)
        self.metrics = ScorerMetrics()
        self.tracer = trace.get_tracer("rtml.scorer")
        #: The (topic, partition)s this process owns (the consumer loop's ``assigned``).
        self.assigned: Callable[[], set[tuple[str, int]]] = set
        self.budget_s = settings.shadow_latency_budget_ms / 1000
        #: What was published for replayed inputs (None: not tracked).
        self.ledger: PublicationLedger | None = None
        # Plain counters for logs, tests and benchmarks.
        self.predictions = 0
        self.shadow_scores = 0
        self.dead_lettered = 0
        self.revisions_skipped = 0
        self.batches = 0
        self.single_row_batches = 0
        self.labels_learned = 0
        self.labels_unmatched = 0
        #: Wall-clock span of the work (first batch start, last batch end).
        self.busy_since: float | None = None
        self.busy_until: float | None = None
        #: Recent batches as (age of the batch's oldest record when handling starts, ms;
        #: handling time, s): where latency goes, queueing vs scoring (benchmarks, logs).
        self.batch_timings: deque[tuple[float, float]] = deque(maxlen=100_000)

    # -- the batch ---------------------------------------------------------

    def handle(self, records: list[Record[Any]]) -> None:
        """Score one batch; idempotent until the champion's outputs are queued."""
        started = time.perf_counter()
        now_ms = time.time() * 1000  # records' Kafka timestamps are wall-clock ms
        if self.busy_since is None:
            self.busy_since = started
        snapshot = self.serving.current  # once per batch: see module docstring
        vectors: list[Record[Vector]] = []
        labels: list[Record[Label]] = []
        for record in records:
            if isinstance(record.value, _VECTOR_TYPES):
                vectors.append(record)
            elif isinstance(record.value, Label):
                labels.append(record)
            else:
                raise TypeError(f"unexpected {type(record.value).__name__} on {record.topic}")
        online = self._online_models(snapshot)
        if vectors:
            snapshot = self._score(snapshot, vectors, online)
            online = self._online_models(snapshot)
        self._learn(labels, online)
        if self.checkpointer is not None and online and self.checkpointer.due():
            self.checkpointer.checkpoint(online)
        self.batches += 1
        self.busy_until = time.perf_counter()
        if records:
            oldest_ms = min(r.timestamp_ms for r in records)
            self.batch_timings.append((now_ms - oldest_ms, self.busy_until - started))

    def on_idle(self) -> None:
        """Between polls that brought nothing: what a batch would have done when due.

        A burst followed by silence must not leave the online models' checkpoint (or
        the publication ledger) behind until the next record arrives.
        """
        online = self._online_models(self.serving.current)
        if self.checkpointer is not None and online and self.checkpointer.due():
            self.checkpointer.checkpoint(online)

    def _online_models(self, snapshot: Snapshot) -> list[ServedModel]:
        if self.settings.feature_cache_size <= 0:
            return []
        return [served for alias, served in sorted(snapshot.shadows.items())
                if isinstance(served.model, OnlineModel)
                and not self.guard.is_detached((alias, served.version))]

    def _wait_for_champion(self, snapshot: Snapshot) -> Snapshot:
        deadline = time.monotonic() + CHAMPION_WAIT_S
        while snapshot.champion is None and time.monotonic() < deadline:
            if self.stop_event.is_set():
                break
            logger.warning("no champion for %s: waiting before scoring", snapshot.name)
            self.stop_event.wait(0.5)
            snapshot = self.serving.current
        return snapshot

    def _score(self, snapshot: Snapshot, records: list[Record[Vector]],
               online: list[ServedModel]) -> Snapshot:
        started_ns = time.time_ns()  # the start of traced records' score spans
        if snapshot.champion is None:
            snapshot = self._wait_for_champion(snapshot)
        champion = snapshot.champion
        fresh = [r for r in records if r.value.revision == 0]
        revised = [r for r in records if r.value.revision != 0] if len(fresh) < len(
            records) else []
        if champion is None:
            for record in fresh:
                self._dead_letter(record, f"no champion alias for model {snapshot.name}",
                                  "NoChampion")
            return snapshot
        # 1. everything that may raise, before any side effect
        names = champion.model.feature_names
        matrix, missing = build_matrix([r.value.features for r in fresh], names)
        complete = ([r for i, r in enumerate(fresh) if i not in missing] if missing else fresh)
        scores = np.empty(0)
        per_row_s = 0.0
        if complete:
            scores, per_row_s = timed_predict(champion.model, matrix)
        invalid = invalid_scores(scores)
        # 2. side effects: dead letters, champion outputs
        for index, absent in missing.items():
            self._dead_letter(fresh[index], f"feature vector lacks {absent} required by "
                              f"{snapshot.name} v{champion.version}", "MissingFeature")
        if invalid.any():
            for index in np.flatnonzero(invalid).tolist():
                self._dead_letter(complete[index], f"champion {snapshot.name} "
                                  f"v{champion.version} returned score {scores[index]!r}",
                                  "InvalidScore")
            keep = ~invalid
            complete = [r for r, ok in zip(complete, keep.tolist(), strict=True) if ok]
            matrix, scores = matrix[keep], scores[keep]
        if complete:
            # Encoded once, shared by the champion's and the shadows' outputs.
            traces = record_spans(self.tracer, "score", complete, started_ns,
                                  {"rtml.model.name": snapshot.name,
                                   "rtml.model.version": champion.version})
            outputs = _Outputs(_keys(complete), output_heads([r.value for r in complete]),
                               traces)
            self._publish_champion(snapshot, champion, complete, outputs, scores, per_row_s)
            # 3. shadows, isolated
            matrices: dict[tuple[str, ...], F64] = {names: matrix}
            for alias, served in sorted(snapshot.shadows.items()):
                self._score_shadow(snapshot, alias, served, complete, outputs, matrices)
        # 4. what online models will learn from
        if online:
            self._remember(online[0].model.feature_names, complete, revised)
        return snapshot

    def _publish_champion(self, snapshot: Snapshot, champion: ServedModel,
                          records: Sequence[Record[Vector]], outputs: _Outputs,
                          scores: F64, per_row_s: float) -> None:
        values = predictions_json(outputs.heads, snapshot.name, champion.version,
                                  scores.tolist(), per_row_s * 1000, datetime.now(UTC))
        keys, traces = outputs.keys, outputs.traces
        if self.ledger is not None and self.ledger.found:
            skip = self.ledger.already_published(
                PREDICTIONS_TOPIC, [r.value.transaction_id for r in records], snapshot.name,
                champion.version)
            if skip:
                keys, values, traces = _without(skip, keys, values, traces)
        self.producer.send_many(PREDICTIONS_TOPIC, zip(keys, values, strict=True),
                                PREDICTION_HEADERS, traces)
        self.predictions += len(values)
        if len(records) == 1:
            self.single_row_batches += 1
        attributes = {"role": _CHAMPION, "alias": champion.alias,
                      "model_version": champion.version}
        self._record(attributes, scores, per_row_s)

    def _record(self, attributes: dict[str, str], scores: F64, per_row_s: float) -> None:
        self.metrics.scored.add(len(scores), attributes)
        role = {"role": attributes["role"], "alias": attributes["alias"]}
        self.metrics.latency.record(per_row_s, role)
        self.metrics.batch_rows.record(len(scores), {"role": attributes["role"]})
        record = self.metrics.scores.record
        for score in score_sample(scores).tolist():
            record(score, attributes)

    def _score_shadow(self, snapshot: Snapshot, alias: str, served: ServedModel,
                      records: list[Record[Vector]], outputs: _Outputs,
                      matrices: dict[tuple[str, ...], F64]) -> None:
        key = (alias, served.version)
        if self.guard.is_detached(key):
            return
        if self.sampler.percent(alias) >= 100:  # no ids to hash
            chosen = list(range(len(records)))
        else:
            chosen = self.sampler.indices(alias, [r.value.transaction_id for r in records])
        if not chosen:
            return
        try:
            names = served.model.feature_names
            matrix = matrices.get(names)
            if matrix is None:
                matrix, missing = build_matrix([r.value.features for r in records], names)
                if missing:
                    absent = sorted({n for names_ in missing.values() for n in names_})
                    raise ShadowFailure("missing_feature", f"vectors lack {absent}")
                matrices[names] = matrix
            rows = matrix if len(chosen) == len(records) else matrix[chosen]
            started = time.perf_counter()
            scores, per_row_s = timed_predict(served.model, rows)
            elapsed = time.perf_counter() - started
            if invalid_scores(scores).any():
                bad = scores[invalid_scores(scores)][:3].tolist()
                raise ShadowFailure("invalid_score", f"returned scores such as {bad}")
        except ShadowFailure as exc:
            self._shadow_failed(key, exc.reason, str(exc))
            return
        except Exception as exc:  # a shadow may fail in any way; the champion must not care
            self._shadow_failed(key, "error", f"{type(exc).__name__}: {exc}")
            return
        champion_version = snapshot.champion.version if snapshot.champion else None
        everyone = len(chosen) == len(records)
        heads = outputs.heads if everyone else [outputs.heads[i] for i in chosen]
        values = shadow_scores_json(heads, snapshot.name, served.version, scores.tolist(),
                                    per_row_s * 1000, datetime.now(UTC), champion_version)
        keys = outputs.keys if everyone else [outputs.keys[i] for i in chosen]
        traces = outputs.traces
        if traces and not everyone:  # re-index to the sample's positions
            traces = {n: traces[i] for n, i in enumerate(chosen) if i in traces}
        if self.ledger is not None and self.ledger.found:
            skip = self.ledger.already_published(
                SHADOW_TOPIC, [records[i].value.transaction_id for i in chosen], snapshot.name,
                served.version)
            if skip:
                keys, values, traces = _without(skip, keys, values, traces)
        self.producer.send_many(SHADOW_TOPIC, zip(keys, values, strict=True), SHADOW_HEADERS,
                                traces)
        self.shadow_scores += len(values)
        self._record({"role": _SHADOW, "alias": alias, "model_version": served.version},
                     scores, per_row_s)
        if elapsed > self.budget_s:
            # The scores are valid and published; the slowness still counts.
            self._shadow_failed(key, "slow", f"{elapsed * 1000:.1f} ms for {len(chosen)} rows "
                                f"(budget {self.settings.shadow_latency_budget_ms:g} ms)")
        else:
            self.guard.success(key)

    def _shadow_failed(self, key: tuple[str, str], reason: str, detail: str) -> None:
        alias, version = key
        self.metrics.shadow_failures.add(1, {"alias": alias, "model_version": version,
                                             "reason": reason})
        detached = self.guard.failure(key, reason)
        logger.warning("shadow %s v%s failed (%s): %s", alias, version, reason, detail)
        if detached:
            self.metrics.shadows_detached.add(1, {"alias": alias, "model_version": version})
            logger.error("shadow %s v%s detached after %d consecutive failures; a model event "
                         "for it re-attaches it", alias, version, self.guard.limit)

    # -- online learning ---------------------------------------------------

    def _remember(self, names: tuple[str, ...], complete: list[Record[Vector]],
                  revised: list[Record[Vector]]) -> None:
        learner = self.learner
        owned = [p for (topic, p) in self.assigned() if topic == FEATURES_TOPIC]
        if owned:
            learner.keep_partitions(owned)
        for group in (complete, revised):
            if not group:
                continue
            matrix, missing = build_matrix([r.value.features for r in group], names)
            rows = iter(matrix)
            for index, record in enumerate(group):
                vector = record.value
                event_ms = epoch_ms(vector.event_time)
                learner.observe(record.partition, event_ms)
                if index in missing:
                    continue
                learner.remember(vector.transaction_id, vector.revision, event_ms, names,
                                 next(rows))
        if revised:
            self.revisions_skipped += len(revised)

    def _learn(self, labels: list[Record[Label]], online: list[ServedModel]) -> None:
        metric = self.metrics.labels
        if not online:
            if labels:
                metric.add(len(labels), {"outcome": "no_online_model"})
            return
        for record in labels:
            label = record.value
            if not self.learner.add_label(label, epoch_ms(label.labeled_at)):
                metric.add(1, {"outcome": "dropped"})
        if not self.learner.pending_labels:
            return
        result = self.learner.learn_due(online)
        if result.learned:
            per_model = result.learned // len(online)
            self.labels_learned += per_model
            metric.add(per_model, {"outcome": "learned"})
            for served in online:
                self.metrics.online_updates.add(per_model, {"alias": served.alias,
                                                            "model_version": served.version})
        if result.unmatched:
            self.labels_unmatched += result.unmatched
            metric.add(result.unmatched, {"outcome": "unmatched"})

    # -- dead letters and shutdown -----------------------------------------

    def _dead_letter(self, record: Record[Any], reason: str, error_type: str) -> None:
        """Refuse one record to ``<topic>.dlq`` with the reason (its bytes as consumed)."""
        headers = [(k, v) for k, v in record.headers if not k.startswith("rtml-dlq-")]
        headers += dead_letter_headers(record.topic, record.partition, record.offset,
                                       self.group_id, reason, error_type, 1)
        value = record.value
        raw = value.raw if isinstance(value, ScoringVector) else encode(value)
        self.producer.send_raw(dead_letter_topic(record.topic), record.key, raw, headers)
        self.dead_lettered += 1
        self.metrics.dead_letters.add(1, {"reason": error_type})
        logger.warning("dead-lettered %s[%d]@%d: %s", record.topic, record.partition,
                       record.offset, reason)

    def close(self) -> None:
        """Checkpoint online models that learned something, and wait for it."""
        if self.checkpointer is None:
            return
        online = self._online_models(self.serving.current)
        if online:
            self.checkpointer.checkpoint(online)
        self.checkpointer.close()
