"""Publish each (transaction, model version) once across crashes and rebalances.

The scorer resumes a ``features`` partition at the group's committed offset,
so after a crash it scores again what it had handled since its last commit —
and re-published those predictions and shadow scores (kill -9 of a replay:
22,679 duplicates). Scoring again is harmless; publishing again is not.

Mechanism (publisher side, where the effect — a record on the topic — happens):

1. **Positions.** Between batches, every ``PUBLICATION_CHECKPOINT_INTERVAL_S``,
   the scorer measures where ``predictions`` and ``shadow-scores`` end
   (the high watermark the broker's fetch responses report —
   :func:`rtml_common.kafka.published.end_offsets`; ListOffsets is wrong on
   the local broker). Every output of an input handled *later* lands at or
   after those positions.
2. **Kept with the offsets they cover.** Once the consumer loop has committed
   after that measurement (its committed offsets then cover everything
   handled before it), the positions are stored for each owned ``features``
   partition ``p`` as the committed offsets of a member-less consumer group
   ``<group>.published.<p>`` on the output topics: Kafka's own offset store,
   no other dependency. So for every partition: *whatever was published for
   inputs at or after its committed offset is at or after its stored positions*.
3. **On assignment** of ``p`` (start, restart, rebalance), before any of its
   records is handled, the scorer reads the output topics from ``p``'s stored
   positions to their current end and keeps the keys found:
   ``(topic, transaction_id, model_name, model_version)``.
4. **While replaying**, an output whose key was found is not sent (each key
   suppressed once). Until ``p``'s replay passes the end ``features``
   partition had at assignment (a crashed owner cannot have read further),
   ``p``'s stored positions are not advanced, so a second crash during the
   replay reads the first crash's outputs again.

Bound: an assignment reads what was published since the positions stored
last, i.e. at most the last commit interval plus the publication checkpoint
interval (more while a replay is catching up), once per assignment. Not
covered: a partition with no stored positions (the first run of a group, or
one upgraded from a version without this) starts a ledger from the current
ends; a zombie (a member presumed dead that still publishes) is not fenced
— only Kafka transactions could, and they are not used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from opentelemetry import metrics

from rtml_common.config import KafkaSettings
from rtml_common.kafka.published import Positions, end_offsets, read_published

logger = logging.getLogger(__name__)

#: (output topic, transaction_id, model_name, model_version).
OutputKey = tuple[str, str, str, str]


def ledger_group(group_id: str, partition: int) -> str:
    """The member-less consumer group whose committed offsets are ``partition``'s positions."""
    return f"{group_id}.published.{partition}"


@dataclass
class _Candidate:
    """Positions measured between batches, waiting for a commit that covers them."""

    positions: Positions
    commits: int
    partitions: set[int] = field(default_factory=set)


class PublicationLedger:
    """See the module docstring. Runs on the scoring thread only."""

    def __init__(self, kafka: KafkaSettings, group_id: str, input_topic: str,
                 output_topics: Sequence[str], interval_s: float,
                 commits: Callable[[], int], timeout_s: float = 60.0) -> None:
        self.kafka = kafka
        self.group_id = group_id
        self.input_topic = input_topic
        self.output_topics = list(output_topics)
        self.interval_s = interval_s
        #: The consumer loop's count of successful commits (``LoopStats.commits``).
        self.commits = commits
        self.timeout_s = timeout_s
        config: dict[str, str | int | float | bool] = {
            "bootstrap.servers": kafka.bootstrap_servers, **kafka.extra}
        self._admin = AdminClient(config)
        #: Keys published after the stored positions, not yet re-emitted.
        self.found: set[OutputKey] = set()
        #: Features partition -> end offset at its assignment, while its replay runs.
        self.reach: dict[int, int] = {}
        #: Features partition -> next offset handled (this process).
        self.handled: dict[int, int] = {}
        self._candidate: _Candidate | None = None
        self._last_measured = time.monotonic()
        self._last_ends: Positions | None = None
        #: Where the scan of the assignment under way started (None once a batch ran).
        self._scanned_since: Positions | None = None
        self.suppressed = 0
        self.saves = 0
        self._suppressed = metrics.get_meter("rtml.scorer").create_counter(
            "rtml_scorer_outputs_suppressed",
            description="Predictions and shadow scores not published again after a crash or "
                        "rebalance (found already published for a replayed input)")
        self._suppressed.add(0)

    # -- the stored positions ---------------------------------------------

    def load(self, partition: int) -> Positions | None:
        """``partition``'s stored positions, or None if it has none yet."""
        request = ConsumerGroupTopicPartitions(ledger_group(self.group_id, partition))
        future = self._admin.list_consumer_group_offsets([request])[request.group_id]
        result = future.result(timeout=self.timeout_s)
        positions = {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or []
                     if tp.offset >= 0 and tp.topic in self.output_topics}
        return positions or None

    def store(self, partitions: set[int], positions: Mapping[tuple[str, int], int]) -> None:
        """Store ``positions`` as each of ``partitions``' ledger."""
        offsets = [TopicPartition(topic, partition, offset)
                   for (topic, partition), offset in sorted(positions.items())]
        if not offsets:
            return
        for partition in sorted(partitions):
            request = ConsumerGroupTopicPartitions(ledger_group(self.group_id, partition), offsets)
            future = self._admin.alter_consumer_group_offsets([request])[request.group_id]
            future.result(timeout=self.timeout_s)
        self.saves += 1

    def ends(self) -> Positions:
        ends = end_offsets(self.kafka, self.output_topics, self._last_ends, self.timeout_s)
        self._last_ends = ends
        return ends

    # -- assignment ---------------------------------------------------------

    def prepare(self, partitions: Sequence[int]) -> None:
        """Before scoring newly assigned ``partitions``: collect what was published for them."""
        if not partitions:
            return
        input_ends = end_offsets(self.kafka, [self.input_topic], timeout_s=self.timeout_s)
        committed = self._committed(partitions)
        since: Positions = {}
        fresh: set[int] = set()
        for partition in partitions:
            stored = self.load(partition)
            if stored is None:
                fresh.add(partition)
                continue
            for key, offset in stored.items():
                since[key] = min(offset, since.get(key, offset))
            self.reach[partition] = input_ends.get((self.input_topic, partition), 0)
            self.handled[partition] = committed.get(partition, 0)
        self._replays_done()
        if fresh:
            # No ledger yet: start one now, before anything of theirs is scored.
            self.store(fresh, self.ends())
            logger.info("features partitions %s: no publication ledger yet, started one",
                        sorted(fresh))
        if not since:
            return
        covered = self._scanned_since
        if covered is not None and all(offset >= covered.get(key, 0)
                                       for key, offset in since.items()):
            return  # this assignment's scan (no batch since) already read from further back
        self._scanned_since = since
        reading = read_published(self.kafka, self.output_topics, since, self.timeout_s)
        before = len(self.found)
        for message in reading:
            try:
                value = orjson.loads(message.value() or b"")
                self.found.add((message.topic() or "", value["transaction_id"],
                                value["model_name"], value["model_version"]))
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # not an output of ours: nothing to suppress
        logger.info("features partitions %s: %d outputs published since their last commit "
                    "(%d records read); they will not be published again",
                    sorted(partitions), len(self.found) - before, reading.records)

    def _committed(self, partitions: Sequence[int]) -> dict[int, int]:
        """The scoring group's committed offsets of ``partitions`` (where their replay starts)."""
        request = ConsumerGroupTopicPartitions(
            self.group_id, [TopicPartition(self.input_topic, p) for p in partitions])
        future = self._admin.list_consumer_group_offsets([request])[self.group_id]
        result = future.result(timeout=self.timeout_s)
        return {tp.partition: tp.offset for tp in result.topic_partitions or []
                if tp.offset >= 0}

    # -- between batches -----------------------------------------------------

    def after_batch(self, consumed: Mapping[tuple[str, int], int], owned: set[int]) -> None:
        """Track handled offsets; measure and store positions when due (see module doc)."""
        self._scanned_since = None  # a batch was handled: a later assignment scans afresh
        for (topic, partition), offset in consumed.items():
            if topic == self.input_topic:
                self.handled[partition] = offset
        for partition in set(self.reach) - owned:  # revoked mid-replay: its new owner scans
            del self.reach[partition]
        self._replays_done()
        self.tick(owned)

    def tick(self, owned: set[int]) -> None:
        """Store a candidate the loop has committed after; measure a new one when due."""
        candidate = self._candidate
        if candidate is not None and self.commits() > candidate.commits:
            settled = (candidate.partitions & owned) - set(self.reach)
            self.store(settled, candidate.positions)
            self._candidate = candidate = None
        if (candidate is None and owned and self.interval_s > 0
                and time.monotonic() - self._last_measured >= self.interval_s):
            self._last_measured = time.monotonic()
            self._candidate = _Candidate(self.ends(), self.commits(), set(owned))

    def _replays_done(self) -> None:
        for partition, end in list(self.reach.items()):
            if self.handled.get(partition, -1) >= end:
                del self.reach[partition]
        if not self.reach and self.found:
            logger.info("replays done: %d output keys were never re-emitted, dropped",
                        len(self.found))
            self.found.clear()

    # -- publishing -----------------------------------------------------------

    def already_published(self, topic: str, transaction_ids: Sequence[str], model_name: str,
                          version: str) -> set[int]:
        """Indices of outputs found published; each key is suppressed once."""
        found = self.found
        skip: set[int] = set()
        for index, transaction_id in enumerate(transaction_ids):
            key = (topic, transaction_id, model_name, version)
            if key in found:
                found.discard(key)
                skip.add(index)
        if skip:
            self.suppressed += len(skip)
            self._suppressed.add(len(skip), {"topic": topic})
        return skip
