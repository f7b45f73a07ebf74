"""The feature worker: records in; feature vectors, online-store writes and late records out.

Transport-agnostic: the Kafka consumer loop and the Faust app both hand it
decoded batches. Per batch it

1. applies each transaction / label to the :class:`StreamingFeatureComputer`
   (which dedupes by transaction id, so a redelivered batch changes nothing);
   the outputs of steps 2 and 3 wait in an outbox until delivered, and a
   batch retried because Redis was unavailable is not applied again (the
   consumer loop waits out such an outage, see :mod:`rtml_common.dependency`):
   its retry delivers the outbox — the recomputation would not hold the same
   writes and vectors (a label revises only once; the batch's own watermark
   could make its older transactions late);
2. writes each touched entity's values to the online store, but only values
   computed at that entity's newest known event, so the store converges to
   the same state whatever order partitions are interleaved in; the write is
   sent first and its reply read last (:meth:`OnlineStore.begin_write`), so
   Redis runs it while this process does step 3 — waiting for it synchronously
   left the worker idle ~15 % of the time;
3. publishes a ``features`` event per emitted vector — a transaction's first
   vector and any revision a late event caused (consumers keep the highest
   revision) — unless a crashed run already published that (transaction,
   revision) after the checkpoint this run resumed from (:mod:`.republish`);
4. sends transactions older than the allowed lateness to
   ``transactions.late`` with the reason, and counts them (again once);
5. every ``checkpoint_interval_s`` — also while idle, see
   :meth:`FeatureWorker.checkpoint_if_due` — flushes the producer and saves the
   state with the offsets it covers and where the outputs ended
   (see :mod:`.checkpoint`);
6. every ``gc_freeze_interval_s``, freezes the objects that survived a young
   garbage collection (:class:`rtml_common.gc_policy.SurvivorFreezer`): the
   window state only grows, and full collections walking all of it stopped
   the worker for up to 166 ms — the whole freshness tail. The engines turn
   CPython's automatic collections off while they run, this being the only one.

Before any of this, a record whose event time is implausibly far from its
partition's or the wall clock's is quarantined (:mod:`.event_time_guard`):
dead-lettered to ``<topic>.dlq`` with the reason, it changes no window,
watermark or online-store hash.

Any feature set: the handbook's sets over handbook transactions run on the
classic :class:`StreamingFeatureComputer`; any other set (another schema, the
generic API's aggregations, compound entities) on the generic computer
(:mod:`.generic_path`), its records decoded with the set's own schema
(:mod:`.generic_inputs`), with the same outputs, guarantees and checkpoints;
such a set writes no prefix logs (the classic layout cannot hold its
aggregations) but the generic layout (``generic_writer``, :mod:`.generic_store`),
checkpointed with the computer and rewritten whole when Redis lost it.

Traces: a record carrying a W3C ``traceparent`` (a transaction the decision
API published inside its request's trace) is applied inside a ``features``
span, child of the producer's span, and the vectors it emits carry that
span's context (:func:`rtml_common.tracing.record_span`). Untraced records
cost nothing more than their decoding (see ``TransactionInput.traced``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec
from opentelemetry import metrics, trace

from rtml_common.batch_histogram import BatchHistogram
from rtml_common.dependency import OUTAGE_ERRORS
from rtml_common.events import Event, FeatureVector, Label, Transaction
from rtml_common.gc_policy import SurvivorFreezer, automatic_collection_paused
from rtml_common.kafka.consumer import ConsumerLoop, Record
from rtml_common.kafka.producer import EventProducer
from rtml_common.serde import dumps, headers_for
from rtml_common.topics import late_topic, spec_for_event
from rtml_common.tracing import TraceHeaders, record_span, trace_headers
from rtml_feature_pipeline.checkpoint import Checkpoint, CheckpointStore
from rtml_feature_pipeline.event_time_guard import (
    ERROR_TYPE,
    EventTimeBounds,
    EventTimeGuard,
    Refusal,
)
from rtml_feature_pipeline.generic_inputs import GenericInput, generic_input
from rtml_feature_pipeline.generic_path import (
    GenericStoreWriter,
    WorkerGenericComputer,
    restore_state,
    snapshot_state,
    uses_classic_path,
)
from rtml_feature_pipeline.inputs import LabelInput, TransactionInput, as_input
from rtml_feature_pipeline.quarantine import dead_letter
from rtml_feature_pipeline.republish import PublishedOutputs, values_hash
from rtml_features.definitions import FeatureSet
from rtml_features.online_store.base import (
    EntityValues,
    OnlineStore,
    entity_features,
    entity_projection,
    write_completed,
)
from rtml_features.online_store.redis.prefix_writer import EntityLogState, PrefixLogWriter
from rtml_features.rows import EPOCH, epoch_ms
from rtml_features.stream import (
    Emission,
    InvalidAmount,
    LateEvent,
    StreamingFeatureComputer,
    restore,
    snapshot,
)
from rtml_features.stream_generic import DuplicateEventId, InvalidEvent

logger = logging.getLogger(__name__)

LATE_REASON_HEADER = "rtml-late-reason"
#: The checkpoint state's entry holding the generic online layout's writer.
GENERIC_LAYOUT_KEY = "generic_online_layout"


#: The output headers of an untraced record (shared, never mutated).
_UNTRACED: TraceHeaders = []


@dataclass
class _Outputs:
    """The ``features`` records one batch emits, sent together after it is applied."""

    #: One timestamp per batch: the vectors of a batch are computed within milliseconds.
    computed_at: datetime
    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: Record index -> the trace headers of a traced record's vector.
    trace_headers: dict[int, TraceHeaders] = field(default_factory=dict)
    revisions: int = 0


def _applied_at(record: Record[Any]) -> int:
    """When a record takes effect, epoch ms: a transaction's event time, a label's labeled_at."""
    value = record.value
    kind = type(value)
    if kind is TransactionInput or kind is GenericInput:
        return value.time_ms
    if kind is LabelInput:
        return value.labeled_at_ms
    return epoch_ms(value.labeled_at if isinstance(value, Label) else value.event_time)


class FeatureWorker:
    """Applies batches of transaction and label records; see the module docstring."""

    def __init__(
        self,
        feature_set: FeatureSet,
        store: OnlineStore,
        producer: EventProducer,
        allowed_lateness: timedelta,
        checkpoints: CheckpointStore | None = None,
        checkpoint_interval_s: float = 300.0,
        gc_freeze_interval_s: float = 1.0,
        published: PublishedOutputs | None = None,
        *,
        event_time_bounds: EventTimeBounds | None = None,
        consumer_group: str = "",
        clock: Callable[[], float] = time.time,
        prefix_logs: PrefixLogWriter | None = None,
        write_latest: bool = True,
        generic_writer: GenericStoreWriter | None = None,
    ) -> None:
        self.feature_set = feature_set
        #: Whether the classic computer serves the set (else the generic one, see
        #: :mod:`.generic_path`).
        self.classic = uses_classic_path(feature_set)
        if not self.classic and prefix_logs is not None:
            raise ValueError(
                f"feature set {feature_set.name!r} is not computed by the classic streaming "
                "computer (another schema, or aggregations / row kinds / compound entities "
                "of the generic API), so its prefix logs cannot be written: set "
                "pass a generic_writer instead (the Kafka engine builds it for the prefix "
                "layouts)")
        if self.classic and generic_writer is not None:
            raise ValueError("a generic online-store writer serves non-classic sets only")
        #: Writes the generic layout of a non-classic set (None: not written). Called per
        #: applied event / label (:meth:`_apply`) and once per delivery (:meth:`_deliver_once`).
        self.generic_writer = generic_writer
        self.store = store
        self.producer = producer
        #: Writes each touched entity's prefix logs (what the decision API computes its
        #: request-time vectors from); None: not written.
        self.prefix_logs = prefix_logs
        #: Whether each touched entity's hash of values at its newest event is written
        #: (the ``latest`` layout); without it the computer does not track them.
        self.write_latest = write_latest
        self.computer: StreamingFeatureComputer | WorkerGenericComputer
        if self.classic:
            self.computer = StreamingFeatureComputer(feature_set, allowed_lateness,
                                                     track_newest=write_latest,
                                                     prefix_logs=prefix_logs is not None)
            self._generic: WorkerGenericComputer | None = None
            #: The classic computer (when it serves the set), typed as such.
            self._classic: StreamingFeatureComputer = self.computer
        else:
            self.computer = self._generic = WorkerGenericComputer(
                feature_set, allowed_lateness, track_newest=write_latest)
            # Never called on this path: _apply dispatches on self._generic first.
            self._classic = cast(StreamingFeatureComputer, None)
        self._schema = feature_set.schema
        #: Refuses implausible event times; its per-partition state lives on the computer
        #: (``source_leads_ms``), so checkpoints and restores carry it.
        self.guard = EventTimeGuard(event_time_bounds or EventTimeBounds(),
                                    self.computer.source_leads_ms, clock)
        #: Named in the dead letters' ``rtml-dlq-consumer-group`` header.
        self.consumer_group = consumer_group
        self.checkpoints = checkpoints
        self.checkpoint_interval_s = checkpoint_interval_s
        #: None: CPython's default collector behaviour (full collections walk the state).
        self.gc_freezer = SurvivorFreezer(gc_freeze_interval_s) if gc_freeze_interval_s else None
        self.offsets: dict[tuple[str, int], int] = {}
        self._sources: dict[tuple[str, int], str] = {}
        self.events_applied = 0
        self.late_events = 0
        self.quarantined = 0
        self.vectors_published = 0
        #: What a crashed run published after the checkpoint (None: not tracked, no Kafka).
        self.published = published
        #: The output ends recorded by the last checkpoint (where the next is fetched near).
        self._output_ends: dict[tuple[str, int], int] | None = None
        #: events_applied and offsets at the last checkpoint: an idle worker with nothing
        #: new does not rewrite the same blob.
        self._checkpointed_at: tuple[int, dict[tuple[str, int], int]] | None = None
        self._last_checkpoint = time.monotonic()
        self._features_topic = spec_for_event(FeatureVector).name
        self._features_headers = headers_for(FeatureVector)
        self._late_topic = late_topic(spec_for_event(Transaction).name)
        #: Entity -> the function taking its features' values out of a vector.
        self._projections = {
            entity.name: entity_projection(entity_features(feature_set, entity))
            for entity in feature_set.entities
        }
        meter = metrics.get_meter("rtml.feature_pipeline")
        self._suppressed = meter.create_counter(
            "rtml_feature_outputs_suppressed",
            description="Vectors and late transactions not re-published after a restart "
                        "(a crashed run had published them after its checkpoint)")
        self._suppressed.add(0)
        self._tracer = trace.get_tracer("rtml.feature_pipeline")
        self._vectors = meter.create_counter(
            "rtml_feature_vectors", description="Feature vectors published (incl. revisions)")
        self._revisions = meter.create_counter(
            "rtml_feature_revisions", description="Vectors re-published after a late event")
        self._late = meter.create_counter(
            "rtml_late_events", description="Transactions beyond the allowed lateness")
        self._quarantined = meter.create_counter(
            "rtml_quarantined_events",
            description="Records dead-lettered for an implausible event time, by topic and reason")
        for counter in (self._revisions, self._late, self._quarantined):  # rare: 0 from start
            counter.add(0)
        #: The outbox: outputs of applied records not yet delivered (a failed Redis write),
        #: delivered by the next attempt (see the module docstring, step 1).
        self._unwritten: dict[tuple[str, str], Emission] = {}
        self._unpublished: list[tuple[Emission, TraceHeaders]] = []
        self._unwritten_produced_ms: list[int] = []
        #: Prefix logs whose changes are not known to be in Redis (taken from the computer,
        #: not yet acknowledged); each is resent whole after a failed write.
        self._unwritten_logs: list[tuple[str, str, EntityLogState]] = []
        #: (topic, partition, offset) of the records applied by a batch whose delivery or
        #: checkpoint failed: its retry does not apply them again.
        self._held: set[tuple[str, int, int]] = set()
        #: (entity, id) -> the vector last written to the online store for it: written
        #: again, whole, if Redis comes back without its data (see :meth:`_store_lost`).
        self._written: dict[tuple[str, str], Emission] = {}
        #: A write failed (Redis unavailable): check for lost data before the next one.
        self._store_failed = False
        #: Whether the marker saying "this worker's writes are in Redis" is set.
        self._marked = False
        #: Called with each transaction's produce-to-online-store latency (benchmarks).
        self.on_freshness: Callable[[float], None] | None = None
        #: Wall-clock span of the work: first batch started, last batch finished.
        self.busy_since: float | None = None
        self.busy_until: float | None = None
        #: Per transaction, so not an OpenTelemetry histogram (~3.8 µs a record with the
        #: SDK): counted per batch, same exported series (see rtml_common.batch_histogram).
        self._freshness = BatchHistogram.shared(
            "rtml_feature_freshness", "s",
            "Transaction produced (Kafka record timestamp) to its features written to the "
            "online store",
            [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
            scope="rtml.feature_pipeline")

    # -- recovery ------------------------------------------------------------

    def recover(self) -> Checkpoint | None:
        """Restore the last checkpoint, if any; the consumer then starts at its offsets."""
        if self.checkpoints is None:
            return None
        checkpoint = self.checkpoints.load()
        if checkpoint is None:
            logger.info("no checkpoint: starting from the earliest offsets")
            if self.published is not None:
                # Record where the outputs end before publishing anything: a crash
                # before the first periodic checkpoint then knows what it sent.
                self.checkpoint()
            return None
        if self._generic is not None:
            restore_state(self._generic, checkpoint.state)
            if self.generic_writer is not None:
                layout = checkpoint.state.get(GENERIC_LAYOUT_KEY)
                if layout is None:
                    # Written without the generic layout (e.g. while serving ``latest``):
                    # the layout then holds only what follows the checkpoint.
                    logger.warning("the checkpoint holds no generic online layout: it starts "
                                   "empty and holds only what follows the checkpoint (clear "
                                   "the checkpoint to rebuild it from the topics)")
                else:
                    self.generic_writer.restore(layout)
        else:
            restore(self._classic, checkpoint.state)
        if self.gc_freezer is not None:
            self.gc_freezer.freeze()  # the restored state: never walked by full collections
        self.offsets = dict(checkpoint.offsets)
        self.events_applied = checkpoint.events_applied
        self._checkpointed_at = (self.events_applied, dict(self.offsets))
        if self.published is not None:
            self.published.scan(checkpoint.published)
            self._output_ends = checkpoint.published
        logger.info("restored checkpoint: %d events applied, offsets %s",
                    checkpoint.events_applied, sorted(checkpoint.offsets.items()))
        return checkpoint

    def collection_paused(self) -> AbstractContextManager[None]:
        """For an engine's run loop: CPython's automatic collections off, if this worker's
        freezer replaces them (it collects young garbage every interval; automatic
        collections in between would walk each batch in flight for nothing)."""
        return automatic_collection_paused() if self.gc_freezer is not None else nullcontext()

    def watch_assignments(self, loop: ConsumerLoop) -> None:
        """Declare assigned transaction partitions as watermark sources as they arrive."""
        transactions = spec_for_event(Transaction).name

        def start_offset(topic: str, partition: int) -> int | None:
            if topic == transactions:
                self.computer.expect_sources([self._source(topic, partition)])
            return self.start_offset(topic, partition)

        loop.set_start_offsets(start_offset)

    def start_offset(self, topic: str, partition: int) -> int | None:
        """Where to resume a partition: the checkpoint's offset, else the beginning (0).

        Never the group's committed offset: events before it but after the
        last checkpoint would be missing from the state.
        """
        return self.offsets.get((topic, partition), 0)

    def cover(self, next_offsets: dict[tuple[str, int], int]) -> None:
        """Count records consumed but not handed over (dead-lettered) as covered.

        Otherwise a restart from the checkpoint would read, and dead-letter,
        them again.
        """
        for key, offset in next_offsets.items():
            if offset > self.offsets.get(key, 0):
                self.offsets[key] = offset

    def checkpoint(self) -> None:
        """Flush outputs, then save state and offsets atomically.

        Outputs still in the outbox are delivered first: a checkpoint covering
        records whose writes were lost would never have them replayed.
        """
        if self.checkpoints is None:
            return
        self._resync_if_lost()
        if (self._unwritten or self._unpublished or self._unwritten_logs
                or self.computer.logs_pending() or self._generic_pending()):
            self._deliver()  # also before the snapshot: it refuses logs with unsent changes
        self.producer.flush()
        positions = None
        if self.published is not None:
            positions = self.published.checkpoint_positions(self.offsets, self._output_ends)
            self._output_ends = positions
        state = (snapshot_state(self._generic) if self._generic is not None
                 else snapshot(self._classic))
        if self.generic_writer is not None:
            state[GENERIC_LAYOUT_KEY] = self.generic_writer.snapshot()
        size = self.checkpoints.save(Checkpoint(state, dict(self.offsets),
                                                self.events_applied, positions))
        self._checkpointed_at = (self.events_applied, dict(self.offsets))
        self._last_checkpoint = time.monotonic()
        logger.debug("checkpoint saved: %d bytes, %d events", size, self.events_applied)

    def checkpoint_if_due(self) -> bool:
        """Checkpoint if the interval has passed and anything was applied since the last.

        For an engine's idle hook: a burst followed by silence must not leave the
        checkpoint behind until the next record arrives (it was 195k events behind).
        """
        if self.checkpoints is None:
            return False
        if time.monotonic() - self._last_checkpoint < self.checkpoint_interval_s:
            return False
        if self._checkpointed_at == (self.events_applied, self.offsets):
            self._last_checkpoint = time.monotonic()
            # Nothing new, but Redis may have restarted empty while this worker idled:
            # then the store and the checkpoint are written again now, not at the next
            # record (no record may come for the entities it lost).
            try:
                self._resync_if_lost()
            except OUTAGE_ERRORS:
                return False  # Redis away: looked at again next interval (and at each write)
            if not (self._unwritten or self.computer.logs_pending()
                    or self._generic_pending()):
                return False
        self.checkpoint()
        return True

    # -- processing ----------------------------------------------------------

    def handle(self, records: list[Record[Any]]) -> None:
        """Apply one batch and deliver its outputs (idempotent: a retried batch changes
        nothing; one whose delivery failed delivers its outbox, see the module docstring).

        Raises the online store's (or the checkpoint's) error when Redis is unavailable:
        the consumer loop then waits and retries, never dead-letters.
        """
        started = time.perf_counter()
        if self.busy_since is None:
            self.busy_since = started
        held = self._held
        if held:
            records = [r for r in records if (r.topic, r.partition, r.offset) not in held]
        self.guard.start_batch()
        produced_ms: list[int] = []
        emitted: list[tuple[Emission, TraceHeaders]] = []
        # Apply in event time (a label at its labeled_at) so records of different
        # partitions in one batch interleave as they happened: fewer revisions.
        for record in sorted(records, key=_applied_at):
            # The common case: no span to run it in. An input the engine decoded already
            # says so (its decoder saw the headers); anything else has them scanned here.
            if not getattr(record.value, "traced", True) or not trace_headers(record.headers):
                self._apply(record, _UNTRACED, produced_ms, emitted)
                continue
            with record_span(self._tracer, "features", record) as traced:
                self._apply(record, traced.headers, produced_ms, emitted)
        # Applied: from here on the batch's outputs are in the outbox until delivered.
        self._unpublished += emitted
        self._unwritten_produced_ms += produced_ms
        # Per entity: its newest event's vector (a newer one replaces a held one).
        self._unwritten.update(self.computer.take_newest_vectors())
        try:
            self._deliver()
            if time.monotonic() - self._last_checkpoint >= self.checkpoint_interval_s:
                self.checkpoint()
        except OUTAGE_ERRORS:
            # Applied but not delivered (or not checkpointed): the loop waits for Redis and
            # retries, which must not apply these records again. Noted only on failure.
            held.update((r.topic, r.partition, r.offset) for r in records)
            raise
        if held:
            held.clear()
        if self.gc_freezer is not None:
            self.gc_freezer.maybe_freeze()
        self.busy_until = time.perf_counter()

    def _deliver(self) -> None:
        """Write the outbox's online-store values and publish its vectors, then empty it.

        Redis runs the writes (as long as computing them took) while the vectors
        are encoded and handed to the producer; then its reply is read. What an
        error (Redis unavailable) leaves undelivered stays for the next attempt;
        after any other error the outbox is dropped (as before there was one).

        Every write is followed by a look at the marker key (one ``EXISTS``):
        a Redis that restarted empty since the marker was set — between two
        writes that both succeeded, redis-py reconnecting silently — lost what
        this worker wrote before, and every entity's last values and logs are
        written again at once (fault-findings F4), not at the next checkpoint.
        """
        if self._store_failed:
            self._resync_if_lost()
            self._store_failed = False
        while self._deliver_once():
            logger.warning("Redis restarted empty since the last write: writing the last "
                           "values of %d entities and the prefix logs of %d again",
                           len(self._written), len(self.computer.logs or ()))
            self._queue_everything()

    def _deliver_once(self) -> bool:
        """:meth:`_deliver`'s one attempt; True if Redis turned out to have lost the store."""
        projections = self._projections
        unwritten = self._unwritten
        logs = self._unwritten_logs
        if self.computer.logs_pending():
            taken = self.computer.take_touched_logs()
            # After a failed write the outbox may hold some of them already: each once.
            logs = self._unwritten_logs = list(dict.fromkeys([*logs, *taken])) if logs else taken
        # The marker's Redis client, if this worker keeps one and writes anything now.
        client = (self.checkpoints.client
                  if self.checkpoints is not None
                  and (unwritten or logs or self._generic_pending()) else None)
        marker = self._marker_key() if client is not None else ""
        try:
            if client is not None and not self._marked:
                # Set *before* the writes: gone after them, it says a restart came in
                # between (set after, a restart in between would leave it on a Redis
                # that never received them).
                client.set(marker, b"1")
                self._marked = True
            stored = self.store.begin_write(self.feature_set, [
                EntityValues(entity, entity_id, projections[entity](emission.vector),
                             emission.time_ms, emission.transaction_id)
                for (entity, entity_id), emission in unwritten.items()])
            if self.generic_writer is not None:
                # The generic layout's changes since the last delivery (synchronous).
                self.generic_writer.flush(cast(Any, self.store).client)
            try:
                logged = self._begin_logs(logs)
                try:
                    self._publish(self._unpublished)
                    self._unpublished = []
                finally:
                    logged()  # always: it also hands its Redis connection back
            finally:
                stored()  # always: it also hands the Redis connection back
            lost = client is not None and not client.exists(marker)
        except OUTAGE_ERRORS:
            self._store_failed = True
            raise
        except Exception:
            # Refused, not unavailable (e.g. a non-finite value): kept, it would be refused
            # at every later attempt and block the pipeline; the loop isolates the records.
            self._unwritten, self._unpublished, self._unwritten_produced_ms = {}, [], []
            raise
        if self.write_latest:
            self._written.update(unwritten)
        self._unwritten = {}
        self._unwritten_logs = []
        written = time.time()
        latencies = [max(0.0, written - produced / 1000)
                     for produced in self._unwritten_produced_ms]
        self._unwritten_produced_ms = []
        self._freshness.observe_many(latencies)
        if self.on_freshness is not None:
            for latency in latencies:
                self.on_freshness(latency)
        return lost

    def _begin_logs(self, logs: list[tuple[str, str, EntityLogState]]) -> Callable[[], None]:
        """Send the logs' changes; return the waiter. A failed send or reply leaves the
        logs in an unknown state in Redis: each is then replaced whole by the next attempt
        (they stay in the outbox; the writer took their diffs)."""
        if self.prefix_logs is None or not logs:
            return write_completed
        try:
            wait = self.prefix_logs.begin(logs)
        except BaseException:
            for _, _, log in logs:
                log.resend()
            raise

        def waiter() -> None:
            try:
                wait()
            except BaseException:
                for _, _, log in logs:
                    log.resend()
                raise

        return waiter

    def _marker_key(self) -> str:
        assert self.checkpoints is not None
        return f"{self.checkpoints.key}:online-store-written"

    def _resync_if_lost(self) -> None:
        """If Redis lost what this worker wrote, queue every entity's last values again.

        The local Redis runs without persistence: restarted, it is empty, and the
        hashes of entities no later record touches would stay missing. A marker
        key, set once the worker's writes are in Redis, tells: gone means lost.
        Checked after a failed write and at every checkpoint (a restart no write
        saw is found within ``checkpoint_interval_s``).
        """
        if not self._marked or self.checkpoints is None:
            return
        if self.checkpoints.client.exists(self._marker_key()):
            return
        logger.warning("Redis lost the online store (restarted empty?): writing the last "
                       "values of %d entities and the prefix logs of %d again",
                       len(self._written), len(self.computer.logs or ()))
        self._queue_everything()

    def _queue_everything(self) -> None:
        """Every entity's last values and every log, whole, into the outbox (Redis lost them);
        the marker is set again before they are written."""
        self._unwritten = {**self._written, **self._unwritten}
        self.computer.resend_logs()
        if self.generic_writer is not None:
            self.generic_writer.resend()
        self._marked = False

    def _generic_pending(self) -> bool:
        """Whether the generic layout has changes not yet sent."""
        return self.generic_writer is not None and self.generic_writer.pending()

    def _apply(self, record: Record[Any], output_headers: TraceHeaders, produced_ms: list[int],
               emitted: list[tuple[Emission, TraceHeaders]]) -> None:
        """One record: its vectors queued for publishing (with ``output_headers``).

        Its value is a :class:`TransactionInput` / :class:`LabelInput` (the Kafka
        engine's decoders) or a ``Transaction`` / ``Label`` event (converted here).
        """
        value = record.value
        kind = type(value)
        if kind is not TransactionInput and kind is not LabelInput and kind is not GenericInput:
            value = self._as_input(value)
            kind = type(value)
        key = (record.topic, record.partition)
        source = self._sources.get(key)
        if source is None:
            source = self._source(*key)
        guard = self.guard
        generic = self._generic
        if generic is not None:
            if kind is LabelInput:
                refusal = guard.check_label(source, value.labeled_at_ms,
                                            value.transaction_time_ms)
                if refusal is not None:
                    return self._quarantine(record, value, refusal)
                emissions = generic.on_label(value.transaction_id, value.labeled_at_ms,
                                             value.is_fraud, value.transaction_time_ms, source)
                guard.advanced(source, value.labeled_at_ms)
                if self.generic_writer is not None:
                    self.generic_writer.apply_label(value.transaction_id, value.labeled_at_ms,
                                                    {"is_fraud": value.is_fraud})
            elif kind is GenericInput:
                refusal = guard.check(source, value.time_ms)
                if refusal is not None:
                    return self._quarantine(record, value, refusal)
                try:
                    emissions = generic.on_event(value.fields, source)
                except LateEvent as exc:
                    self._send_late(record, value, str(exc))
                    emissions = []
                except (InvalidEvent, DuplicateEventId) as exc:  # refused before any change
                    return self._quarantine(record, value, Refusal("event", str(exc)),
                                            type(exc).__name__)
                else:
                    produced_ms.append(record.timestamp_ms)
                    guard.advanced(source, value.time_ms)
                    if self.generic_writer is not None:
                        self.generic_writer.apply_event(
                            {**value.fields, self._schema.event_time: value.time_ms})
            else:
                raise TypeError(f"feature set {self.feature_set.name!r} reads events of schema "
                                f"{self._schema.name!r}, not handbook transaction inputs")
        elif kind is TransactionInput:
            refusal = guard.check(source, value.time_ms)
            if refusal is not None:
                return self._quarantine(record, value, refusal)
            try:
                emissions = self._classic.on_transaction(
                    value.transaction_id, value.customer_id, value.terminal_id,
                    value.time_ms, value.amount, source)
            except LateEvent as exc:
                self._send_late(record, value, str(exc))
                emissions = []
            except InvalidAmount as exc:  # refused before any state changed (decoders bypassed)
                return self._quarantine(record, value, Refusal("amount", str(exc)), "InvalidAmount")
            else:
                produced_ms.append(record.timestamp_ms)
                guard.advanced(source, value.time_ms)
        else:
            refusal = guard.check_label(source, value.labeled_at_ms, value.transaction_time_ms)
            if refusal is not None:
                return self._quarantine(record, value, refusal)
            emissions = self._classic.on_label(
                value.transaction_id, value.customer_id, value.terminal_id,
                value.transaction_time_ms, value.labeled_at_ms, value.is_fraud, source)
            guard.advanced(source, value.labeled_at_ms)
        for emission in emissions:
            emitted.append((emission, output_headers))
        next_offset = record.offset + 1
        if next_offset > self.offsets.get(key, 0):
            self.offsets[key] = next_offset
        self.events_applied += 1

    def _as_input(self, value: object) -> TransactionInput | LabelInput | GenericInput:
        """The input of a decoded event handed over directly (tests, other engines)."""
        if self._generic is not None and isinstance(value, Event) and not isinstance(value, Label):
            return generic_input(self._schema, value)
        return as_input(value)

    def _quarantine(self, record: Record[Any],
                    value: TransactionInput | LabelInput | GenericInput,
                    refusal: Refusal, error_type: str = ERROR_TYPE) -> None:
        """Dead-letter a record refused by the guard, as it was read, before it touched
        any state; its offset counts as covered (a restart does not send it again)."""
        topic = dead_letter(self.producer, record, value.record_bytes(), self.consumer_group,
                            refusal.reason, error_type)
        self.quarantined += 1
        self._quarantined.add(1, {"topic": record.topic, "reason": refusal.kind})
        next_offset = record.offset + 1
        key = (record.topic, record.partition)
        if next_offset > self.offsets.get(key, 0):
            self.offsets[key] = next_offset
        logger.warning("quarantined %s[%s]@%s to %s: %s", record.topic, record.partition,
                       record.offset, topic, refusal.reason)

    def _source(self, topic: str, partition: int) -> str:
        """The watermark source name of a partition, formatted once per partition."""
        name = self._sources.get((topic, partition))
        if name is None:
            name = self._sources[(topic, partition)] = f"{topic}:{partition}"
        return name

    def _encode(self, emission: Emission, output_headers: TraceHeaders,
                batch: _Outputs) -> None:
        """Queue one vector's ``features`` record on ``batch`` (sent by :meth:`_publish`)."""
        customer_id, terminal_id = emission.ids
        if output_headers:
            batch.trace_headers[len(batch.records)] = output_headers
        batch.records.append((str(customer_id).encode(), dumps({
            "transaction_id": emission.transaction_id,
            "customer_id": customer_id,
            "terminal_id": terminal_id,
            "event_time": EPOCH + timedelta(milliseconds=emission.time_ms),
            "amount": emission.amount,
            "feature_set": self.feature_set.name,
            "feature_set_version": self.feature_set.version,
            "features": emission.vector,
            "revision": emission.revision,
            "computed_at": batch.computed_at,
        })))
        if emission.revision:
            batch.revisions += 1

    def _publish(self, emitted: list[tuple[Emission, TraceHeaders]]) -> None:
        """Encode a batch's vectors and send them in one call: one ``poll`` per batch."""
        if not emitted:
            return
        batch = _Outputs(datetime.now(UTC))
        if self.published is not None and self.published.highest:
            emitted = self._not_yet_published(emitted)
        for emission, output_headers in emitted:
            self._encode(emission, output_headers, batch)
        sent = self.producer.send_many(self._features_topic, batch.records,
                                       self._features_headers, batch.trace_headers)
        self.vectors_published += sent
        self._vectors.add(sent)
        if batch.revisions:
            self._revisions.add(batch.revisions)

    def _not_yet_published(self, emitted: list[tuple[Emission, TraceHeaders]]
                           ) -> list[tuple[Emission, TraceHeaders]]:
        """Drop the vectors a crashed run published after the checkpoint (each once, when
        the values are the same); renumber the others above its highest revision
        (see :mod:`.republish`, step 3)."""
        assert self.published is not None
        found = self.published.vectors
        highest = self.published.highest
        kept = []
        for item in emitted:
            emission = item[0]
            tid = emission.transaction_id
            values = found.pop((tid, emission.revision), None)
            if values is not None and values == values_hash(emission.vector):
                self.published.suppressed_vectors += 1
                self._suppressed.add(1, {"topic": self._features_topic})
                continue
            top = highest.get(tid)
            if top is not None and emission.revision <= top:
                item = (self._renumber(emission, top + 1), item[1])
                highest[tid] = top + 1
            kept.append(item)
        return kept

    def _renumber(self, emission: Emission, revision: int) -> Emission:
        """``emission`` as ``revision``; the computer's latest vector of its transaction too,
        if it is this one (its next revision then counts on from ``revision``)."""
        renumbered = msgspec.structs.replace(emission, revision=revision)
        recent = self.computer.recent
        if (latest := recent.get(emission.transaction_id)) is not None \
                and latest.revision == emission.revision:
            recent[emission.transaction_id] = msgspec.structs.replace(latest, revision=revision)
        return renumbered

    def _send_late(self, record: Record[Any], transaction: TransactionInput | GenericInput,
                   reason: str) -> None:
        """Forward a too-late transaction, as it was read, with the reason in a header."""
        self.late_events += 1
        self._late.add(1)
        if self.published is not None and transaction.transaction_id in self.published.late:
            self.published.late.discard(transaction.transaction_id)
            self.published.suppressed_late += 1
            self._suppressed.add(1, {"topic": self._late_topic})
            return
        headers = [*record.headers, (LATE_REASON_HEADER, reason.encode())]
        self.producer.send_raw(self._late_topic, record.key, transaction.record_bytes(), headers)
        logger.info("late transaction sent to %s: %s", self._late_topic, reason)

