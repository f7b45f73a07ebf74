"""Publish each (transaction, revision) once across crashes: suppress what a crashed run sent.

A restarted worker replays its input from the checkpoint's offsets; without
this it re-published every vector (and late transaction) the crashed run had
sent after that checkpoint (kill -9 mid-replay of 100k transactions: 22,679
identical revision-0 vectors, which the scorer then scored twice).

Mechanism (publisher side, where the effect — a record on the topic — happens):

1. Every checkpoint records, after flushing the producer, where each output
   partition (``features``, ``transactions.late``) ends, as the broker's
   fetch responses report it (:func:`rtml_common.kafka.published.end_offsets`;
   never ListOffsets, which the local broker answers wrongly). Everything the
   worker publishes after the checkpoint lands at or after those positions.
2. After a restart, the worker reads both topics from those positions to
   their current end (the crashed process is gone, so nothing of its is still
   to come) and keeps the keys found: ``(transaction_id, revision)`` of this
   feature set's vectors, ``transaction_id`` of late transactions.
3. While replaying, an emission whose key was found *with the same values* is
   not sent (and the key is forgotten: each is suppressed at most once). One
   whose key was found with other values, or whose revision is not above the
   highest the crashed run published for its transaction, is sent *above* that
   highest revision, and the computer's revision of the transaction is moved
   there (later revisions count on from it, and checkpoints carry it): the
   replay may number a transaction's states differently from the crashed run
   (batches cut and interleaved otherwise around an out-of-order event), and a
   replayed revision 0 holding the final values, suppressed because the crashed
   run's revision 0 — computed before that event — was found, left consumers
   with the crashed run's stale vector (``tests/test_generic_crash.py`` caught
   it: 13 values of 2,779 vectors).
4. Until the replay has passed the input positions the crashed run could have
   reached (the input partitions' ends at restart), checkpoints keep the
   *older* positions, so a crash during the replay scans the first crash's
   output again; afterwards they record new ends and the keys are dropped.

Bound: a restart reads what was published since the last checkpoint saved
before the crash (at most ``CHECKPOINT_INTERVAL_S`` of output, more while a
replay is still catching up), once, before consuming; it keeps per vector a
hash of its values (one int). So consumers keeping each transaction's highest
revision hold the replay's newest values. Not covered: a transaction whose
vector the crashed run revised and the replay never revises again (it could
only differ if an event was refused as late in one run and not in the other).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import orjson

from rtml_common.config import KafkaSettings
from rtml_common.kafka.published import Positions, end_offsets, read_published
from rtml_features.definitions import FeatureSet

logger = logging.getLogger(__name__)


def values_hash(features: Mapping[str, float]) -> int:
    """A vector's values as one int (in the set's feature order, as published): what a
    replayed vector is compared with. Floats hash alike in every process."""
    return hash(tuple(features.values()))


class PublishedOutputs:
    """What this worker's crashed predecessor published after its checkpoint; see module doc."""

    def __init__(self, kafka: KafkaSettings, feature_set: FeatureSet, features_topic: str,
                 late_topic: str, input_topics: Sequence[str]) -> None:
        self.kafka = kafka
        self.feature_set = feature_set
        self.features_topic = features_topic
        self.late_topic = late_topic
        self.input_topics = list(input_topics)
        #: (transaction_id, revision) of vectors found after the checkpoint's positions ->
        #: :func:`values_hash` of their features.
        self.vectors: dict[tuple[str, int], int] = {}
        #: transaction_id -> the highest revision found for it (a replayed vector that is
        #: not suppressed is published above it).
        self.highest: dict[str, int] = {}
        #: transaction_id of late transactions found after them.
        self.late: set[str] = set()
        #: Input offsets the crashed run cannot have gone beyond (their ends at restart);
        #: None when no replay is under way.
        self.replay_reach: Positions | None = None
        #: Where the last scan started: what checkpoints keep while the replay runs.
        self.scanned_from: Positions | None = None
        self.suppressed_vectors = 0
        self.suppressed_late = 0

    @property
    def output_topics(self) -> list[str]:
        return [self.features_topic, self.late_topic]

    def ends(self, near: Mapping[tuple[str, int], int] | None = None) -> Positions:
        """Where the output partitions end now (after a flush: past all we published)."""
        return end_offsets(self.kafka, self.output_topics, near)

    def scan(self, since: Mapping[tuple[str, int], int] | None) -> int:
        """Collect the keys published at or after ``since`` (None: from the beginning).

        Also records the input ends the replay must pass before the keys can go.
        Returns how many output records were read.
        """
        self.replay_reach = end_offsets(self.kafka, self.input_topics)
        self.scanned_from = dict(since or {})
        if since is None:
            logger.warning("checkpoint without output positions (older format): reading "
                           "%s from the beginning once", self.output_topics)
        reading = read_published(self.kafka, self.output_topics, since or {})
        name, version = self.feature_set.name, self.feature_set.version
        for message in reading:
            try:
                value = orjson.loads(message.value() or b"")
                if message.topic() == self.features_topic:
                    if value["feature_set"] == name and value["feature_set_version"] == version:
                        tid, revision = value["transaction_id"], int(value["revision"])
                        self.vectors[(tid, revision)] = values_hash(value["features"])
                        if revision > self.highest.get(tid, -1):
                            self.highest[tid] = revision
                else:
                    self.late.add(value["transaction_id"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # not one of ours (another producer's bad record): nothing to suppress
        logger.info("after the checkpoint, %d vectors and %d late transactions had been "
                    "published (%d records read); they will not be published again",
                    len(self.vectors), len(self.late), reading.records)
        return reading.records

    def replaying(self, offsets: Mapping[tuple[str, int], int]) -> bool:
        """Whether the input read so far is still short of what the crashed run may have read."""
        reach = self.replay_reach
        if reach is None:
            return False
        if all(offsets.get(key, 0) >= end for key, end in reach.items()):
            self.replay_reach = None
            self.scanned_from = None
            logger.info("replay past the crashed run's input: %d vector and %d late keys not "
                        "re-emitted (their inputs were already in the restored state) dropped",
                        len(self.vectors), len(self.late))
            self.vectors.clear()
            self.highest.clear()
            self.late.clear()
            return False
        return True

    def checkpoint_positions(self, offsets: Mapping[tuple[str, int], int],
                             near: Mapping[tuple[str, int], int] | None) -> Positions:
        """The ``published`` positions of a checkpoint covering ``offsets`` (after a flush)."""
        if self.replaying(offsets) and self.scanned_from is not None:
            return dict(self.scanned_from)
        return self.ends(near)
