"""How far behind its input a consumer is, from what the consumer itself knows.

The usual consumer-lag figure is the broker's log-end offset minus the
group's committed offset. We do not use it: the local Kafka-protocol broker
(Tansu) answers end-offset requests with figures that do not match what a
consumer can actually read, so a lag computed from them is wrong in both
directions. Instead each :class:`~rtml_common.kafka.consumer.ConsumerLoop`
exports what it tracks itself, per consumer group, topic and partition:

* ``rtml_consumer_lag_seconds`` — when a batch was read, now minus the Kafka
  timestamp (the producer's create time) of the newest record read from that
  partition: how long the record waited before this consumer reached it.
  It stays at its last value while the partition is idle (an idle consumer is
  not behind); a consumer that stops reading a busy topic shows up as a
  throughput drop to zero instead.
* ``rtml_consumer_read_offset`` — the offset after the last record read
  (handed to the handler or dead-lettered).
* ``rtml_consumer_committed_offset`` — the offset last committed for the group.
  ``read - committed`` is what a crash now would replay (at-least-once).

The gauges are observable: the consumer thread only updates dicts, and the
Prometheus scrape reads them, so the hot path pays no metric call per batch.
One set of instruments serves every loop of the process (a process may run
several, e.g. the decision API's log writer next to its model watcher).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message, TopicPartition
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

Partition = tuple[str, int]


class ConsumerProgress:
    """One consumer group member's read / commit position and lag, per partition."""

    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        #: Seconds between the newest record's Kafka timestamp and the moment it was read.
        self.lag_s: dict[Partition, float] = {}
        #: Next offset to read (after the last record read).
        self.read: dict[Partition, int] = {}
        #: Offset last committed.
        self.committed: dict[Partition, int] = {}
        _register(self)

    def on_batch(self, messages: Sequence[Message], consumed: dict[Partition, int]) -> None:
        """Note a batch just read: ``consumed`` maps partition -> next offset."""
        if not consumed:
            return
        self.read.update(consumed)
        now_ms = time.time() * 1000
        missing = set(consumed)
        # The newest record of each partition, scanning back from the end of the batch
        # (librdkafka returns a partition's records together, so this stops early).
        for message in reversed(messages):
            key = (message.topic() or "", message.partition() or 0)
            if key not in missing or message.error() is not None:
                continue
            missing.discard(key)
            kind, timestamp_ms = message.timestamp()
            if kind != TIMESTAMP_NOT_AVAILABLE:
                self.lag_s[key] = max(0.0, now_ms - timestamp_ms) / 1000
            if not missing:
                break

    def on_commit(self, offsets: Iterable[TopicPartition]) -> None:
        for tp in offsets:
            self.committed[(tp.topic, tp.partition)] = tp.offset

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop revoked partitions: another member reports them now."""
        for tp in partitions:
            key = (tp.topic, tp.partition)
            for figures in (self.lag_s, self.read, self.committed):
                figures.pop(key, None)


_lock = threading.Lock()
_members: weakref.WeakSet[ConsumerProgress] = weakref.WeakSet()
_instruments: list[metrics.ObservableGauge] = []


def _observe(figures_of: Callable[[ConsumerProgress], dict[Partition, float] | dict[Partition, int]]
             ) -> Callable[[CallbackOptions], Iterator[Observation]]:
    def callback(_options: CallbackOptions) -> Iterator[Observation]:
        for member in list(_members):
            for (topic, partition), value in figures_of(member).copy().items():
                yield Observation(value, {"group": member.group_id, "topic": topic,
                                          "partition": str(partition)})

    return callback


def _register(member: ConsumerProgress) -> None:
    """Track ``member``; create the process-wide observable gauges on first use."""
    with _lock:
        _members.add(member)
        if _instruments:
            return
        meter = metrics.get_meter("rtml.kafka")
        _instruments.extend([
            meter.create_observable_gauge(
                "rtml_consumer_lag", callbacks=[_observe(lambda m: m.lag_s)], unit="s",
                description="Age (now - Kafka timestamp) of the newest record read, when read"),
            meter.create_observable_gauge(
                "rtml_consumer_read_offset", callbacks=[_observe(lambda m: m.read)],
                description="Offset after the last record read"),
            meter.create_observable_gauge(
                "rtml_consumer_committed_offset", callbacks=[_observe(lambda m: m.committed)],
                description="Offset last committed by the group"),
        ])
