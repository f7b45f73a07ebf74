"""Checkpoints of the streaming state with the input offsets they cover.

Why not Kafka-native state (Faust tables, changelog topics)? Recovery from a
changelog reads "up to the end offset", which the local broker reports
wrongly (a restored table once lost its newest update), and it relies on
compaction the local broker does not enforce. A checkpoint we write
ourselves says exactly which input it contains: the worker restores it and
resumes every partition at the offsets recorded *in the same blob*, so each
event is applied once — events before the checkpoint are inside the state,
events after it are replayed. Output written after the checkpoint is
rewritten identically on replay (idempotent).

A checkpoint is one Redis string, written with a single SET (atomic), as
plain JSON (never pickle: the blob must not be able to run code).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

FORMAT = 1


@dataclass
class Checkpoint:
    """Streaming state plus the next offset to read for each input partition."""

    state: dict[str, Any]
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    events_applied: int = 0

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "format": FORMAT,
            "offsets": [[topic, partition, offset]
                        for (topic, partition), offset in sorted(self.offsets.items())],
            "events_applied": self.events_applied,
            "state": self.state,
        })

    @classmethod
    def from_bytes(cls, raw: bytes) -> Checkpoint:
        data = orjson.loads(raw)
        if data.get("format") != FORMAT:
            raise ValueError(f"unsupported checkpoint format {data.get('format')!r}")
        return cls(
            state=data["state"],
            offsets={(topic, partition): offset for topic, partition, offset in data["offsets"]},
            events_applied=data["events_applied"],
        )


def checkpoint_key(group_id: str, feature_set: str, version: str) -> str:
    """One checkpoint per consumer group and feature set version."""
    return f"rtml:feature-pipeline:checkpoint:{group_id}:{feature_set}:{version}"


class CheckpointStore:
    """Loads and saves one checkpoint key in Redis."""

    def __init__(self, client: redis.Redis, key: str) -> None:
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
