"""Consumer lag and offsets as the consumer tracks them (pure logic; fake messages).

The loop's integration with a real broker is covered by tests/test_dashboards.py,
which requires these gauges to reach Prometheus from every consumer service.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE, TopicPartition

from rtml_common.kafka.progress import ConsumerProgress


@dataclass
class FakeMessage:
    """The part of confluent_kafka.Message that ConsumerProgress reads."""

    _topic: str
    _partition: int
    _timestamp: tuple[int, int]

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def timestamp(self) -> tuple[int, int]:
        return self._timestamp

    def error(self) -> None:
        return None


def _message(topic: str, partition: int, age_s: float,
             kind: int = TIMESTAMP_CREATE_TIME) -> FakeMessage:
    return FakeMessage(topic, partition, (kind, int((time.time() - age_s) * 1000)))


def test_lag_is_the_age_of_the_newest_record_read_per_partition() -> None:
    progress = ConsumerProgress("group-a")
    batch = [_message("t", 0, 30.0), _message("t", 0, 10.0), _message("t", 1, 60.0),
             _message("u", 0, 5.0, kind=TIMESTAMP_NOT_AVAILABLE)]
    progress.on_batch(batch, {("t", 0): 8, ("t", 1): 3, ("u", 0): 1})  # type: ignore[arg-type]

    assert set(progress.lag_s) == {("t", 0), ("t", 1)}  # no timestamp, no lag figure
    assert 9.0 <= progress.lag_s[("t", 0)] < 11.0  # the newest record of the partition
    assert 59.0 <= progress.lag_s[("t", 1)] < 61.0
    assert progress.read == {("t", 0): 8, ("t", 1): 3, ("u", 0): 1}


def test_committed_offsets_and_revoked_partitions() -> None:
    progress = ConsumerProgress("group-b")
    progress.on_batch([_message("t", 0, 1.0), _message("t", 1, 1.0)],  # type: ignore[list-item]
                      {("t", 0): 5, ("t", 1): 7})
    progress.on_commit([TopicPartition("t", 0, 5)])
    assert progress.committed == {("t", 0): 5}
    assert progress.read[("t", 1)] - progress.committed.get(("t", 1), 0) == 7  # uncommitted

    progress.forget([TopicPartition("t", 0)])
    assert ("t", 0) not in progress.read and ("t", 0) not in progress.committed
    assert ("t", 0) not in progress.lag_s and ("t", 1) in progress.lag_s
