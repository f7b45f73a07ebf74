"""What a service already published: output positions and the records after them.

A service that replays input after a crash re-publishes what it had
published between its last checkpoint and the crash. To publish each output
once, it records at every checkpoint where its output partitions end
(:func:`end_offsets`) and, after a restart, reads its output topics from
those positions to their current end (:func:`read_published`): exactly the
records written after the checkpoint, whose keys it then suppresses while
replaying. See the feature pipeline's and the scorer's READMEs for how each
uses it and the bound it gives.

Why the *fetch* high watermark and never ListOffsets: the local Tansu broker
answers ListOffsets "latest" wrongly after batched writes (1 for a partition
holding 5,000 records; 9,461 for 10,002), while the high watermark in its
fetch responses is exact. So an end is learned by fetching: assign the
partition at a known position, fetch once, read the watermark the response
carried (librdkafka caches it), or consume until the client reports the end
of the partition (``enable.partition.eof``). On Apache Kafka the fetch high
watermark is the end of the replicated log — records acknowledged with
``acks=all`` are below it — so the same code is correct there.

Correctness does not depend on the idempotent producer either: a record
produced after a position was measured is appended after every record
acknowledged before it (so after the position) whether or not the client
retries; a retry can only add a duplicate *inside* the post-checkpoint range,
which the reader sees and suppresses like any other.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from rtml_common.config import KafkaSettings

#: (topic, partition) -> offset.
Positions = dict[tuple[str, int], int]

#: The reader never commits; librdkafka still wants a group id.
READER_GROUP = "rtml-published-reader"


def reader_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """librdkafka properties of an assign-only reader that reports partition ends."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": f"{settings.client_id}-published-reader",
        "group.id": READER_GROUP,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        # A position beyond the log (topic recreated, non-durable broker restarted):
        # read everything there is; reading more than needed is always safe.
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 10,
    }
    config.update(settings.extra)
    config.update(overrides)
    return config


def topic_partitions(consumer: Consumer, topics: Sequence[str],
                     timeout_s: float = 10.0) -> list[tuple[str, int]]:
    """Every (topic, partition) of ``topics`` (a topic that does not exist has none)."""
    found: list[tuple[str, int]] = []
    metadata = consumer.list_topics(timeout=timeout_s).topics
    for topic in topics:
        described = metadata.get(topic)
        if described is None or described.error is not None:
            continue
        found.extend((topic, partition) for partition in sorted(described.partitions))
    return found


class _EndsReached:
    """Consume assigned partitions until each has reported its end; see the callers."""

    def __init__(self, consumer: Consumer, partitions: Sequence[tuple[str, int]],
                 timeout_s: float) -> None:
        self.consumer = consumer
        self.waiting = set(partitions)
        self.deadline = time.monotonic() + timeout_s
        self.ends: Positions = {}

    def batches(self, stop_at_first_record: bool, batch: int = 1000) -> Iterator[list[Message]]:
        while self.waiting:
            if time.monotonic() > self.deadline:
                raise KafkaException(
                    f"the ends of {sorted(self.waiting)} were not reached in time: the broker "
                    "is unreachable or too slow; refusing to guess what was published")
            records: list[Message] = []
            reached: list[TopicPartition] = []
            # Probing (one event per partition is enough): return as soon as that many
            # are in, not after the timeout.
            wanted = len(self.waiting) if stop_at_first_record else batch
            for message in self.consumer.consume(num_messages=wanted, timeout=0.05):
                key = (message.topic() or "", message.partition() or 0)
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        if key in self.waiting:
                            self.ends[key] = message.offset() or 0
                            self.waiting.discard(key)
                            reached.append(TopicPartition(*key))
                        continue
                    if error.fatal() or error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART,
                                                         KafkaError._UNKNOWN_PARTITION):
                        raise KafkaException(error)
                    continue  # transient client errors: the client retries by itself
                if stop_at_first_record and key in self.waiting:
                    # The fetch that brought this record carried the partition's end.
                    _, high = self.consumer.get_watermark_offsets(TopicPartition(*key),
                                                                  cached=True)
                    if high >= 0:
                        self.ends[key] = high
                        self.waiting.discard(key)
                        reached.append(TopicPartition(*key))
                records.append(message)
            if reached:
                self.consumer.pause(reached)  # nothing more is needed from them
            yield records


def end_offsets(settings: KafkaSettings, topics: Sequence[str],
                near: Mapping[tuple[str, int], int] | None = None,
                timeout_s: float = 30.0) -> Positions:
    """Each partition's current end offset, as the broker's fetch responses report it.

    ``near`` (e.g. the previous checkpoint's ends) is where each partition is
    fetched from: one fetch there returns at most a batch and the watermark,
    instead of the partition's first batch.
    """
    near = near or {}
    consumer = Consumer(reader_config(settings, **{"max.partition.fetch.bytes": 1,
                                                   "queued.min.messages": 1000}))
    try:
        partitions = topic_partitions(consumer, topics)
        if not partitions:
            return {}
        consumer.assign([TopicPartition(topic, partition, near.get((topic, partition),
                                                                   OFFSET_BEGINNING))
                         for topic, partition in partitions])
        reading = _EndsReached(consumer, partitions, timeout_s)
        for _ in reading.batches(stop_at_first_record=True):
            pass
        return reading.ends
    finally:
        consumer.close()


class PublishedRead:
    """Iterate the records of ``topics`` from ``start`` to each partition's end.

    A partition missing from ``start`` is read from its beginning (it did not
    exist, or was never measured, when the positions were recorded). After the
    iteration, :attr:`ends` holds where each partition ended.
    """

    def __init__(self, settings: KafkaSettings, topics: Sequence[str],
                 start: Mapping[tuple[str, int], int], timeout_s: float = 120.0) -> None:
        self.settings = settings
        self.topics = list(topics)
        self.start = dict(start)
        self.timeout_s = timeout_s
        self.ends: Positions = {}
        self.records = 0

    def __iter__(self) -> Iterator[Message]:
        consumer = Consumer(reader_config(self.settings))
        try:
            partitions = topic_partitions(consumer, self.topics)
            if not partitions:
                return
            consumer.assign([TopicPartition(topic, partition, self.start.get((topic, partition),
                                                                             OFFSET_BEGINNING))
                             for topic, partition in partitions])
            reading = _EndsReached(consumer, partitions, self.timeout_s)
            for batch in reading.batches(stop_at_first_record=False):
                self.records += len(batch)
                yield from batch
            self.ends = reading.ends
        finally:
            consumer.close()


def read_published(settings: KafkaSettings, topics: Sequence[str],
                   start: Mapping[tuple[str, int], int],
                   timeout_s: float = 120.0) -> PublishedRead:
    """The records written to ``topics`` since ``start`` (see :class:`PublishedRead`)."""
    return PublishedRead(settings, topics, start, timeout_s)
