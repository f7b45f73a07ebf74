"""Feature vectors one event at a time: the logic every streaming engine runs.

:class:`StreamingFeatureComputer` owns the per-entity :class:`EntityState`
of a feature set and turns each transaction into its feature vector the way
the batch engine computes it over history (the parity tests hold them to
1e-9). Engines (the Faust app, a plain consumer loop, Flink map functions)
only move events in and vectors out; they never compute features themselves.

Out-of-order and late events: the computer tracks the highest event time
seen per *source* (an input partition) and takes the lowest of those as the
watermark, so a consumer that reads one partition ahead of another does not
make the other's events look late. A transaction older than ``watermark -
allowed_lateness`` is refused with :class:`LateEvent` so the engine can route
it to its late path (its windows may already have been evicted). One within
the lateness is inserted where it belongs, and every already-emitted
transaction whose windows it changes is recomputed and returned as a
*revision* — the same for a label that arrives after transactions that should
have seen it. The last vector emitted for a transaction therefore always
equals the batch engine's point-in-time value.

>>> from datetime import timedelta
>>> from rtml_features.baseline import BASELINE
>>> computer = StreamingFeatureComputer(BASELINE, allowed_lateness=timedelta(minutes=5))
>>> [(e.transaction_id, e.revision, e.vector["customer_id_nb_tx_1day_window"])
...  for e in computer.on_transaction("2", "c1", "t1", 1_522_584_060_000, 20.0)]
[('2', 0, 1.0)]
>>> [(e.transaction_id, e.revision, e.vector["customer_id_nb_tx_1day_window"])
...  for e in computer.on_transaction("1", "c1", "t1", 1_522_584_000_000, 5.0)]  # 1 min late
[('1', 0, 1.0), ('2', 1, 2.0)]
"""

from __future__ import annotations

import logging
import math
from array import array
from bisect import bisect_left
from collections import deque
from datetime import timedelta
from typing import Any

import msgspec

from rtml_common.events import MAX_AMOUNT
from rtml_features.definitions import Entity, FeatureSet
from rtml_features.online import NEVER, EntityState
from rtml_features.online_store.redis.prefix_layout import MEMBER_SPELLING
from rtml_features.online_store.redis.prefix_writer import EntityLogState
from rtml_features.prefix_log import OutOfRange
from rtml_features.request_vector import EntityLogSpec, log_spec
from rtml_features.vector_plan import VectorPlan

logger = logging.getLogger(__name__)


class LateEvent(ValueError):
    """A transaction arrived later than the allowed lateness."""


class InvalidAmount(ValueError):
    """A transaction amount no window may hold: not finite, negative, or above the maximum.

    The event contract (``Transaction.amount``, bounded by ``RTML_CONTRACT_MAX_AMOUNT``)
    refuses such records when they are decoded; this is the computer's own check, for
    callers that bypass the decoders (another engine, a test, a bug), because one
    1e308 in an entity's window makes its sums ``inf`` until the event leaves the
    window: every vector of the entity poisoned, for up to 30 days. Raised before any
    state changes, so the caller can refuse the transaction and carry on.
    """


class Emission(msgspec.Struct, gc=False):
    """A feature vector for a transaction, with what is needed to publish or recompute it.

    ``revision`` is 0 for the first vector of a transaction and counts up each
    time a late event or label changes it. Treat as read-only (a revision is a new
    object). One per transaction, kept while it is revisable: a msgspec ``Struct``
    (C ``__init__``, ~3x cheaper than a slotted dataclass's) that the cyclic garbage
    collector does not walk (``gc=False``: it holds no cycles).
    """

    transaction_id: str
    ids: tuple[str | None, str | None]  # (customer_id, terminal_id)
    time_ms: int
    amount: float
    vector: dict[str, float]
    revision: int = 0


class StreamingFeatureComputer:
    """Per-entity window state plus the feature set's arithmetic.

    Eviction is lazy: an entity's expired events are dropped when it is next
    touched, and a sweep every ``sweep_every`` of event time drops idle
    entities, so per-event cost does not grow with the number of entities.
    Vectors are dicts keyed by feature name, in ``feature_set.names`` order,
    computed by the feature set's generated :class:`~rtml_features.vector_plan.VectorPlan`.
    """

    def __init__(self, feature_set: FeatureSet, allowed_lateness: timedelta = timedelta(0),
                 sweep_every: timedelta = timedelta(days=7), track_newest: bool = False,
                 max_amount: float = MAX_AMOUNT, prefix_logs: bool = False):
        self.feature_set = feature_set
        #: Amounts above this are refused (:class:`InvalidAmount`): with it, no window sum
        #: can overflow (it would take more than 1e290 events in one window).
        self.max_amount = max_amount
        #: With ``track_newest``: (entity, id) -> the vector last emitted for the entity's
        #: newest event, since the last :meth:`take_newest_vectors` (what an online store
        #: must hold). Kept here because only the state knows, cheaply, which event is newest.
        self._newest_vectors: dict[tuple[str, str], Emission] | None = (
            {} if track_newest else None)
        self.allowed_lateness_ms = int(allowed_lateness.total_seconds() * 1000)
        self.sweep_every_ms = int(sweep_every.total_seconds() * 1000)
        self.states: dict[tuple[str, str], EntityState] = {}
        self.watermark_ms: int | None = None
        #: Highest event time per source (None: expected, nothing read yet); the
        #: watermark is their minimum, undefined while an expected source is silent.
        self.source_times: dict[str, int | None] = {}
        #: Per source: its highest event time minus the wall-clock ms it was applied at.
        #: Kept (and checkpointed) here, next to the times it qualifies, for an engine's
        #: plausibility guard (the feature pipeline's ``EventTimeGuard``); unused otherwise.
        self.source_leads_ms: dict[str, int] = {}
        #: Highest event time of any transaction applied (revisions look back from it).
        self.max_time_ms: int | None = None
        #: Transactions emitted within the lateness horizon (candidates for revision).
        self.recent: dict[str, Emission] = {}
        self._recent_order: deque[tuple[int, str]] = deque()
        self.revisions = 0
        self._last_sweep_ms: int | None = None
        self._swept_at_watermark: int | None = None
        self.horizon_ms = {
            entity.name: int(feature_set.horizon(entity).total_seconds() * 1000)
            for entity in feature_set.entities
        }
        #: Per entity: how far behind the watermark its events are still needed.
        self._retention_ms = {entity: self.allowed_lateness_ms + horizon
                              for entity, horizon in self.horizon_ms.items()}
        #: The vector function generated for this feature set (see :mod:`.vector_plan`).
        self.plan = VectorPlan(feature_set)
        self._vector = self.plan.vector
        self._groups = self.plan.groups
        self._entities = sorted({(group.entity, group.key_index) for group in self._groups})
        #: An event at t can only change vectors of its entity stamped >= t + this.
        self._min_delay = {
            entity: min(group.delay_ms for group in self._groups if group.entity == entity)
            for entity, _ in self._entities
        }
        self._label_entities = sorted(
            {(group.entity, group.key_index) for group in self._groups if group.uses_labels}
        )
        #: With ``prefix_logs``: (entity, id) -> the writer state of the entity's prefix logs
        #: (:mod:`rtml_features.online_store.redis.prefix_writer`), kept next to its
        #: :class:`EntityState` and changed with it: the same events, labels and eviction
        #: cut-offs, so the logs answer a request at any time the state can still serve.
        self.logs: dict[tuple[str, str], EntityLogState] | None = {} if prefix_logs else None
        self._log_specs: dict[str, EntityLogSpec] = (
            {entity.name: _log_spec(feature_set, entity) for entity in feature_set.entities}
            if prefix_logs else {})
        #: Logs changed since :meth:`take_touched_logs` (their diffs are pending).
        self._touched_logs: dict[tuple[str, str], EntityLogState] = {}
        #: Logs of dropped states, emptied, whose deletion is still to be sent.
        self._dropped_logs: list[tuple[str, str, EntityLogState]] = []
        #: Events the state kept but a log could not (before a trimmed log's anchor).
        self.log_refusals = 0

    def _state(self, entity: str, entity_id: str) -> EntityState:
        key = (entity, entity_id)
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = EntityState()
        return state

    def on_transaction(self, transaction_id: str, customer_id: str, terminal_id: str | None,
                       time_ms: int, amount: float, source: str = "") -> list[Emission]:
        """Apply a transaction; return its vector first, then any revised earlier vectors.

        ``source`` names the input partition it was read from (for the
        watermark). A redelivered transaction changes no state and returns its
        vector again. Raises :class:`InvalidAmount` (before changing anything) for an
        amount that is not a finite number in ``[0, max_amount]``.
        """
        if not 0.0 <= amount <= self.max_amount:  # also False for nan
            raise InvalidAmount(
                f"transaction {transaction_id}: amount {amount!r} is not a finite number in "
                f"[0, {self.max_amount!r}] (RTML_CONTRACT_MAX_AMOUNT); it would make its "
                "entities' window sums non-finite"
            )
        watermark = self.watermark_ms
        if watermark is not None and time_ms < watermark - self.allowed_lateness_ms:
            raise LateEvent(
                f"transaction {transaction_id} at {time_ms} is "
                f"{watermark - time_ms} ms behind the watermark "
                f"(allowed {self.allowed_lateness_ms} ms)"
            )
        ids = (customer_id, terminal_id)
        added = False
        retention = self._retention_ms
        states = self.states
        tracked = self._newest_vectors
        logs = self.logs
        touched = self._touched_logs
        newest_of: list[tuple[str, str]] = []  # entities this transaction is the newest event of
        # Whether an emitted vector may have to count this transaction (see _revise): some
        # entity has another event at or after its time plus the entity's smallest delay.
        # Decided here from the entity's last events; most transactions need no _revise call.
        revisable = False
        min_delay = self._min_delay
        for entity, key_index in self._entities:
            entity_id = ids[key_index]
            if entity_id is not None:
                key = (entity, entity_id)  # self._state(), inlined: twice per transaction
                state = states.get(key)
                if state is None:
                    state = states[key] = EntityState()
                if state.add_transaction(transaction_id, time_ms, amount):
                    added = True
                    if logs is not None:
                        log = logs.get(key)
                        events = log.events if log is not None else None
                        if (events is not None and events.times and time_ms > events.times[-1]
                                and (log.labels is None  # type: ignore[union-attr]
                                     or transaction_id not in state.labels)):
                            # The common case, inlined (~1.5 µs an entity): an append, no label.
                            events._append(transaction_id, time_ms, {"amount": amount})
                            touched[key] = log  # type: ignore[assignment]
                        else:
                            self._log_transaction(key, state, transaction_id, time_ms, amount)
                if tracked is not None and state.tids[-1] == transaction_id:
                    newest_of.append(key)
                if not revisable:
                    times = state.times
                    delay = min_delay[entity]
                    since = time_ms + delay
                    last = times[-1]
                    revisable = last > since or (last == since and (
                        delay > 0 or (len(times) > 1 and times[-2] == since)))
                if watermark is not None:
                    horizon = watermark - retention[entity]
                    if state.times[0] < horizon:
                        state.evict(horizon)
                        if logs is not None:
                            self._trim_log(key, horizon)
        seen = self.source_times.get(source)
        if seen is None or time_ms > seen:
            self.source_times[source] = time_ms
            # The minimum can only move if this source was (one of) the slowest.
            if seen is None or watermark is None or seen <= watermark:
                self._update_watermark()
        newest = self.max_time_ms
        if newest is None or time_ms > newest:
            self.max_time_ms = time_ms
        vector = self._vector(self.states, ids, time_ms, amount)
        previous = self.recent.get(transaction_id)
        if previous is None:
            self._recent_order.append((time_ms, transaction_id))
        emission = Emission(transaction_id, ids, time_ms, amount, vector,
                            previous.revision if previous is not None else 0)
        self.recent[transaction_id] = emission
        if tracked is not None:
            for key in newest_of:
                tracked[key] = emission
        emitted = [emission]
        if added and revisable:
            # Emitted transactions at or after this time may have counted without it.
            emitted += self._revise(ids, since_ms=time_ms, skip=transaction_id, add_delay=True)
        self._maybe_sweep()
        return emitted

    def on_label(self, transaction_id: str, customer_id: str, terminal_id: str | None,
                 transaction_time_ms: int, labeled_at_ms: int,
                 is_fraud: bool, source: str = "") -> list[Emission]:
        """Record a label; return revised vectors of emitted transactions it should reach.

        ``source`` (the label partition) joins the watermark once it has
        delivered, at its labels' ``labeled_at``: when labels are read behind
        transactions (a consumer catching up fetches topics unevenly), the
        watermark waits for them, so the vectors a late-read label must revise
        are still revisable instead of swept. A label source that has never
        delivered (before the first labels exist) holds nothing back.
        """
        if source:
            seen = self.source_times.get(source)
            if seen is None or labeled_at_ms > seen:
                watermark = self.watermark_ms
                self.source_times[source] = labeled_at_ms
                if seen is None or watermark is None or seen <= watermark:
                    self._update_watermark()
        ids = (customer_id, terminal_id)
        added = False
        for entity, key_index in self._label_entities:
            entity_id = ids[key_index]
            if entity_id is not None and self._state(entity, entity_id).add_label(
                    transaction_id, labeled_at_ms, is_fraud, transaction_time_ms):
                added = True
                if self.logs is not None and is_fraud:
                    self._log_label((entity, entity_id), transaction_id, transaction_time_ms,
                                    labeled_at_ms)
        # Only fraud labels change vectors (label fields are fraud counts).
        newest = self.max_time_ms
        if not added or not is_fraud or newest is None or labeled_at_ms > newest:
            return []
        return self._revise(ids, since_ms=max(labeled_at_ms, transaction_time_ms))

    # -- prefix logs ---------------------------------------------------------

    def _log_transaction(self, key: tuple[str, str], state: EntityState, transaction_id: str,
                         time_ms: int, amount: float) -> None:
        """The event the state just accepted, into the entity's log; with its label when the
        label came first (the state joined it, so must the log)."""
        assert self.logs is not None
        log = self.logs.get(key)
        if log is None:
            log = self.logs[key] = EntityLogState(self._log_specs[key[0]])
            # Its first write replaces the keys: members another run left there (another
            # consumer group, a lost checkpoint; TTLs are weeks) must not mix with these.
            log.resend()
        try:
            log.add_event(transaction_id, time_ms, {"amount": amount})
        except OutOfRange:
            # Before the anchor of a trimmed log: only if the watermark went back by more
            # than a horizon (a new input partition far behind). The state's windows miss
            # the same trimmed events; the log cannot hold it without its running sums.
            self.log_refusals += 1
            logger.warning("prefix log of %s: transaction %s at %d is before the log's "
                           "anchor; not logged", key, transaction_id, time_ms)
            return
        label = state.labels.get(transaction_id)
        if label is not None and label[1]:
            log.add_label(transaction_id, time_ms, label[0], {"is_fraud": label[1]})
        self._touched_logs[key] = log

    def _log_label(self, key: tuple[str, str], transaction_id: str, transaction_time_ms: int,
                   labeled_at_ms: int) -> None:
        """A first fraud label the state accepted, into the log if its event is there (as
        :meth:`EntityState.add_label` marks only an event it holds)."""
        assert self.logs is not None
        log = self.logs.get(key)
        if (log is not None and log.events.has(transaction_id, transaction_time_ms)
                and log.add_label(transaction_id, transaction_time_ms, labeled_at_ms,
                                  {"is_fraud": 1.0})):
            self._touched_logs[key] = log

    def _trim_log(self, key: tuple[str, str], cutoff_ms: int) -> None:
        """Trim the entity's log at the cut-off its state was just evicted at, in steps
        of more than :data:`LOG_TRIM_SLACK` entries (a trim per appended event cost more
        than the few older entries kept; they change no answer)."""
        assert self.logs is not None
        log = self.logs.get(key)
        # (the label log trims only when the event log does)
        if log is not None and log.trim(cutoff_ms, LOG_TRIM_SLACK):
            self._touched_logs[key] = log

    def _drop_log(self, key: tuple[str, str]) -> None:
        """The state of ``key`` is being dropped: delete its log's keys with the next write.

        A replace with nothing (``DEL``), not the removal of the members the state
        holds: after a restore, Redis may hold members this process never computed.
        """
        assert self.logs is not None
        log = self.logs.pop(key, None)
        if log is None:
            return
        log.clear()
        for diff in log.diffs():
            diff.replace_with([], [])
        self._touched_logs.pop(key, None)
        self._dropped_logs.append((key[0], key[1], log))

    def take_touched_logs(self) -> list[tuple[str, str, EntityLogState]]:
        """(entity, id, log) of every log changed since the last call, for
        :meth:`~rtml_features.online_store.redis.prefix_writer.PrefixLogWriter.begin`;
        dropped entities' deletions first (a new state of the same entity follows them)."""
        taken = self._dropped_logs
        if self._touched_logs:
            taken += [(entity, entity_id, log)
                      for (entity, entity_id), log in self._touched_logs.items()]
            self._touched_logs = {}
        self._dropped_logs = []
        return taken

    def logs_pending(self) -> bool:
        """Whether :meth:`take_touched_logs` has anything to hand over."""
        return bool(self._touched_logs) or bool(self._dropped_logs)

    def resend_logs(self) -> None:
        """Every log's keys written again, whole, with the next write (Redis lost them)."""
        if self.logs is None:
            return
        for key, log in self.logs.items():
            log.resend()
            self._touched_logs[key] = log

    def expect_sources(self, sources: list[str]) -> None:
        """Declare input partitions that will deliver events (e.g. on assignment).

        Until each has delivered one, the watermark stays undefined: nothing is
        judged late and nothing evicted while a slower partition may still
        hold older events.
        """
        for source in sources:
            self.source_times.setdefault(source, None)
        self._update_watermark()

    def _update_watermark(self) -> None:
        times = self.source_times.values()
        # Runs for most events (whenever the slowest source moves): no generators.
        self.watermark_ms = None if not times or None in times else min(times)  # type: ignore[type-var]

    def _retention(self, entity: str) -> int:
        return self._retention_ms[entity]

    def _revise(self, ids: tuple[str | None, str | None], since_ms: int,
                skip: str | None = None, add_delay: bool = False) -> list[Emission]:
        """Recompute recent vectors sharing an entity with ``ids``, stamped >= ``since_ms``.

        Candidates come from the entities' own sorted events, so the cost is
        the number of affected events, not the size of ``recent``. With
        ``add_delay`` (a new transaction) an entity whose windows all lie a
        label delay back only looks from ``since_ms + delay``.
        """
        candidates: set[str] = set()
        for entity, key_index in self._entities:
            entity_id = ids[key_index]
            state = self.states.get((entity, entity_id)) if entity_id is not None else None
            if state is None:
                continue
            since = since_ms + self._min_delay[entity] if add_delay else since_ms
            if state.times[-1] < since if state.times else True:
                continue
            start = bisect_left(state.times, since)
            tids = state.tids
            if start == len(tids) - 1 and tids[start] == skip:
                continue  # the common case: only the new transaction itself
            candidates.update(tid for tid in tids[start:] if tid in self.recent)
        candidates.discard(skip or "")
        if not candidates:
            return []
        revised = []
        for other_id in sorted(candidates, key=lambda tid: (self.recent[tid].time_ms, tid)):
            emitted = self.recent[other_id]
            vector = self._vector(self.states, emitted.ids, emitted.time_ms, emitted.amount)
            if vector != emitted.vector:
                revision = Emission(other_id, emitted.ids, emitted.time_ms, emitted.amount,
                                    vector, emitted.revision + 1)
                self.recent[other_id] = revision
                revised.append(revision)
                if self._newest_vectors is not None:
                    self._track_if_newest(revision)
        self.revisions += len(revised)
        return revised

    def _track_if_newest(self, emission: Emission) -> None:
        """Remember ``emission`` for each entity whose newest event it is."""
        tracked = self._newest_vectors
        assert tracked is not None
        for entity, key_index in self._entities:
            entity_id = emission.ids[key_index]
            if entity_id is None:
                continue
            state = self.states.get((entity, entity_id))
            if state is not None and state.tids and state.tids[-1] == emission.transaction_id:
                tracked[(entity, entity_id)] = emission

    def take_newest_vectors(self) -> dict[tuple[str, str], Emission]:
        """(entity, id) -> the latest vector of the entity's newest event, emitted since the
        last call; then forget them. Always empty without ``track_newest``.

        An older event's vector (a late arrival, or a revision of one) is never
        among them, so an online store written from these converges to the same
        state whatever order partitions are read in.
        """
        if self._newest_vectors is None:
            return {}
        taken, self._newest_vectors = self._newest_vectors, {}
        return taken

    def vector(self, transaction_id: str, ids: tuple[str | None, str | None], time_ms: int,
               amount: float) -> dict[str, float]:
        """The feature vector at (time, id) from the current state (no state change)."""
        return self._vector(self.states, ids, time_ms, amount)

    def _maybe_sweep(self) -> None:
        watermark = self.watermark_ms
        if watermark is None or watermark == self._swept_at_watermark:
            return  # nothing became sweepable since the last call (most transactions)
        self._swept_at_watermark = watermark
        cutoff = watermark - self.allowed_lateness_ms
        order = self._recent_order
        while order and order[0][0] < cutoff:
            _, transaction_id = order.popleft()
            emitted = self.recent.get(transaction_id)
            if emitted is not None and emitted.time_ms < cutoff:
                del self.recent[transaction_id]
        if self._last_sweep_ms is None:
            self._last_sweep_ms = watermark
        elif watermark - self._last_sweep_ms >= self.sweep_every_ms:
            self.evict()
            self._last_sweep_ms = watermark

    def evict(self) -> int:
        """Drop all state no window can reach any more; return events dropped."""
        if self.watermark_ms is None:
            return 0
        dropped = 0
        logs = self.logs
        for key, state in list(self.states.items()):
            cutoff = self.watermark_ms - self._retention(key[0])
            dropped += state.evict(cutoff, purge_labels=True)
            if logs is not None:
                self._trim_log(key, cutoff)
            if state.is_empty():
                del self.states[key]
                if logs is not None:
                    self._drop_log(key)
        return dropped


def _log_spec(feature_set: FeatureSet, entity: Entity) -> EntityLogSpec:
    """The entity's :func:`~rtml_features.request_vector.log_spec`, if this computer can fill
    it: it is handed a transaction's ``amount`` and a label's ``is_fraud`` only."""
    spec = log_spec(feature_set, entity)
    fields = {*spec.sum_fields, *(name for name, _ in spec.extreme_fields)}
    if not fields <= {"amount"} or not set(spec.label_fields) <= {"is_fraud"}:
        raise ValueError(f"prefix logs of {entity.name!r} need fields "
                         f"{sorted(fields | set(spec.label_fields))}; the streaming computer "
                         "has a transaction's amount and a label's is_fraud only")
    return spec


SNAPSHOT_FORMAT = 1

#: A prefix log is trimmed once more than this many of its entries are before the
#: eviction cut-off's anchor (see :meth:`StreamingFeatureComputer._trim_log`).
LOG_TRIM_SLACK = 8


def snapshot(computer: StreamingFeatureComputer) -> dict[str, Any]:
    """The computer's whole state as plain JSON-able data (for checkpoints).

    Plain data, not pickle: a checkpoint read back from a shared store must
    not be able to run code.
    """
    states = [
        [entity, entity_id, state.times.tolist(), state.tids, state.amounts.tolist(),
         state.fraud_known_at.tolist(), [[tid, *label] for tid, label in state.labels.items()]]
        for (entity, entity_id), state in computer.states.items()
    ]
    names = computer.feature_set.names
    recent = [
        [e.transaction_id, e.ids[0], e.ids[1], e.time_ms, e.amount, e.revision,
         [e.vector[n] for n in names]]
        for e in computer.recent.values()
    ]
    data = {
        "format": SNAPSHOT_FORMAT,
        "feature_set": computer.feature_set.name,
        "feature_set_version": computer.feature_set.version,
        "watermark_ms": computer.watermark_ms,
        "source_times": computer.source_times,
        "source_leads_ms": computer.source_leads_ms,
        "max_time_ms": computer.max_time_ms,
        "last_sweep_ms": computer._last_sweep_ms,
        "revisions": computer.revisions,
        "states": states,
        "recent": recent,
    }
    if computer.logs is not None:
        # After the logs' writes were acknowledged (a pending change is refused): the
        # restored logs then hold what Redis holds for every entity not written since.
        data["logs"] = [[entity, entity_id, log.snapshot()]
                        for (entity, entity_id), log in computer.logs.items()]
        data["logs_spelling"] = MEMBER_SPELLING
    return data


def restore(computer: StreamingFeatureComputer, data: dict[str, Any]) -> None:
    """Load a :func:`snapshot` into an empty computer of the same feature set version."""
    if data.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"unsupported snapshot format {data.get('format')!r}")
    if data["feature_set_version"] != computer.feature_set.version:
        raise ValueError(
            f"snapshot is for feature set version {data['feature_set_version']}, "
            f"not {computer.feature_set.version}"
        )
    if computer.states or computer.recent:
        raise ValueError("restore needs a fresh computer")
    limit = computer.max_amount
    dropped_events = dropped_vectors = 0
    for entity, entity_id, times, ids, amounts, fraud_known_at, labels in data["states"]:
        if not all(_valid_amount(amount, limit) for amount in amounts):
            # Saved before amounts were bounded (issue #17): a 1e308 would keep the
            # entity's sums inf for its whole window. Its transaction is forgotten.
            keep = [i for i, amount in enumerate(amounts) if _valid_amount(amount, limit)]
            dropped_events += len(amounts) - len(keep)
            times, ids = [times[i] for i in keep], [ids[i] for i in keep]
            amounts, fraud_known_at = [amounts[i] for i in keep], [fraud_known_at[i] for i in keep]
        state = EntityState(
            times=array("q", times), tids=list(ids), amounts=array("d", amounts),
            fraud_known_at=array("q", fraud_known_at),
            labels={tid: (labeled_at, is_fraud, tx_ms) for tid, labeled_at, is_fraud, tx_ms
                    in labels},
            n_frauds=sum(1 for at in fraud_known_at if at != NEVER),
        )
        computer.states[(entity, entity_id)] = state
    names = computer.feature_set.names
    for tid, customer_id, terminal_id, time_ms, amount, revision, values in data["recent"]:
        if not _valid_amount(amount, limit) or not _finite(values):
            dropped_vectors += 1  # not revisable any more: its windows were poisoned
            continue
        computer.recent[tid] = Emission(tid, (customer_id, terminal_id), time_ms, amount,
                                        dict(zip(names, values, strict=True)), revision)
        computer._recent_order.append((time_ms, tid))
    if computer.logs is not None:
        # Checkpoints from before the spelling was recorded wrote version 1.
        _restore_logs(computer, data.get("logs"), data.get("logs_spelling", 1))
    computer.watermark_ms = data["watermark_ms"]
    computer.source_times = dict(data["source_times"])
    # Absent from checkpoints written before it existed: each source starts afresh.
    computer.source_leads_ms.clear()
    computer.source_leads_ms.update(data.get("source_leads_ms") or {})
    computer.max_time_ms = data["max_time_ms"]
    computer._last_sweep_ms = data["last_sweep_ms"]
    computer.revisions = data["revisions"]
    if dropped_events or dropped_vectors:
        logger.warning("restore: dropped %d event(s) with an amount outside [0, %r] and %d "
                       "non-finite vector(s) saved before amounts were bounded",
                       dropped_events, limit, dropped_vectors)


def _restore_logs(computer: StreamingFeatureComputer, saved: list[Any] | None,
                  spelling: int) -> None:
    """The prefix logs of a checkpoint; rebuilt from the window state when it has none.

    Either way each restored log replaces its Redis keys at its first write
    (:meth:`EntityLogState.restore`): what a crashed run wrote after the checkpoint
    cannot survive the replay. Logs saved by a worker that spelled members otherwise
    (``spelling`` is not :data:`MEMBER_SPELLING`) are all written again, whole, at
    the first delivery: Redis holds their old texts, which readers no longer parse.
    A checkpoint written without logs (an older worker, or one that wrote the latest
    hashes only) gets logs of the state's events and labels; their running sums start
    at the oldest retained event, which changes no window difference.
    """
    logs = computer.logs
    assert logs is not None
    specs = computer._log_specs
    if saved is not None:
        for entity, entity_id, log_data in saved:
            log = logs[(entity, entity_id)] = EntityLogState.restore(specs[entity], log_data)
            if spelling != MEMBER_SPELLING:
                log.resend()
                computer._touched_logs[(entity, entity_id)] = log
        return
    for (entity, entity_id), state in computer.states.items():
        if not state.times:
            continue
        log = EntityLogState(specs[entity])
        for tid, time_ms, amount in zip(state.tids, state.times, state.amounts, strict=True):
            log.add_event(tid, time_ms, {"amount": amount})
            label = state.labels.get(tid)
            if label is not None and label[1]:
                log.add_label(tid, time_ms, label[0], {"is_fraud": label[1]})
        log.resend()  # replace the keys at the first write
        logs[(entity, entity_id)] = log
        computer._touched_logs[(entity, entity_id)] = log


def _valid_amount(amount: Any, limit: float) -> bool:
    """A finite number in ``[0, limit]`` (what :meth:`StreamingFeatureComputer.on_transaction`
    accepts); a checkpoint's JSON may also hold None where an ``inf`` was written."""
    return isinstance(amount, int | float) and 0.0 <= amount <= limit


def _finite(values: list[Any]) -> bool:
    """Every value a finite number (one sum: bounded amounts cannot overflow it)."""
    try:
        return math.isfinite(sum(values))
    except TypeError:  # a None (orjson writes inf and nan as null)
        return False
