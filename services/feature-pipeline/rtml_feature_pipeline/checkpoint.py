"""Checkpoints of the streaming state with the input offsets they cover.

Why not Kafka-native state (Faust tables, changelog topics)? Recovery from a
changelog reads "up to the end offset", which the local broker reports
wrongly (a restored table once lost its newest update), and it relies on
compaction the local broker does not enforce. A checkpoint we write
ourselves says exactly which input it contains: the worker restores it and
resumes every partition at the offsets recorded *in the same blob*, so each
event is applied once — events before the checkpoint are inside the state,
events after it are replayed. Output written after the checkpoint is
rewritten identically on replay (Redis: idempotent) or not re-published at
all (topics): the blob also records where the output partitions ended
(``published``), and a restarted worker reads what was published after
those positions and suppresses exactly that (see :mod:`.republish`).

A checkpoint is one Redis string, written with a single SET (atomic), as
plain JSON (never pickle: the blob must not be able to run code).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from redis.cluster import RedisCluster

FORMAT = 2
#: Readable formats: 1 lacks ``published`` (read as unknown: everything is scanned once).
READABLE_FORMATS = (1, 2)


@dataclass
class Checkpoint:
    """Streaming state plus the next offset to read for each input partition."""

    state: dict[str, Any]
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    events_applied: int = 0
    #: Output (topic, partition) -> offset from which records may have been published
    #: after this checkpoint (its fetch-reported end when saved; older while a crash's
    #: replay is under way). None: unknown (a format-1 checkpoint).
    published: dict[tuple[str, int], int] | None = None

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "format": FORMAT,
            "offsets": [[topic, partition, offset]
                        for (topic, partition), offset in sorted(self.offsets.items())],
            "events_applied": self.events_applied,
            "published": None if self.published is None else [
                [topic, partition, offset]
                for (topic, partition), offset in sorted(self.published.items())],
            "state": self.state,
        })

    @classmethod
    def from_bytes(cls, raw: bytes) -> Checkpoint:
        data = orjson.loads(raw)
        if data.get("format") not in READABLE_FORMATS:
            raise ValueError(f"unsupported checkpoint format {data.get('format')!r}")
        published = data.get("published")
        return cls(
            state=data["state"],
            offsets={(topic, partition): offset for topic, partition, offset in data["offsets"]},
            events_applied=data["events_applied"],
            published=None if published is None else {
                (topic, partition): offset for topic, partition, offset in published},
        )


def checkpoint_key(group_id: str, feature_set: str, version: str) -> str:
    """One checkpoint per consumer group and feature set version."""
    return f"rtml:feature-pipeline:checkpoint:{group_id}:{feature_set}:{version}"


class CheckpointStore:
    """Loads and saves one checkpoint key in Redis."""

    def __init__(self, client: redis.Redis | RedisCluster, key: str) -> None:
        self.client = client
        self.key = key

    def load(self) -> Checkpoint | None:
        raw = self.client.get(self.key)
        return Checkpoint.from_bytes(raw) if raw else None  # type: ignore[arg-type]

    def save(self, checkpoint: Checkpoint) -> int:
        """Write the checkpoint; return its size in bytes."""
        blob = checkpoint.to_bytes()
        self.client.set(self.key, blob)
        return len(blob)

    def clear(self) -> None:
        self.client.delete(self.key)
