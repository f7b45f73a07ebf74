"""The drift monitor's checkpoint: window counts and alert states with the input offsets they cover.

Why: the windows are event-time spans of days, held in memory. Without a
checkpoint a restart resumed at the group's committed offsets with empty
windows: the windows open at the crash were closed *partial* and never
evaluated (a week of sliding windows lost per crash), the alert states were
forgotten (an ongoing drift raised a second alert for the same episode) and
so was the retrain cooldown (a second retrain request within it).

How it stays exact (the feature pipeline's scheme,
``rtml_feature_pipeline.checkpoint``): the checkpoint holds the state *and*
the next offset of every input partition it covers; on start the consumer
resumes every partition at those offsets, not at the group's, so each
record is counted once — records before the checkpoint are in its counts,
records after it are replayed onto them. Before a checkpoint is written the
producer is flushed, so every alert and retrain request the covered records
caused is on Kafka, and the ends of the output partitions are recorded with
it (:func:`rtml_common.kafka.published.end_offsets`). After a restart the
monitor reads what it published after those ends (what the replayed records
had already caused before the crash, :func:`~rtml_common.kafka.published.read_published`)
and does not publish those alert / request ids again: ids are deterministic
(``alerts.alert_id`` / ``request_id``), so each alert and request is
published once across crashes.

One JSON file (never pickle: reading it must not be able to run code),
replaced atomically (``rtml_common.files.write_bytes_atomically``), so a
crash mid-write leaves the previous checkpoint. A checkpoint of another
champion version is not restored (its windows are binned in other bins):
the monitor then starts empty at the group's offsets, as after a champion
move.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from rtml_common.files import remove_temp_files, write_bytes_atomically

logger = logging.getLogger(__name__)

FORMAT = 1


@dataclass
class MonitorCheckpoint:
    """A detector snapshot (None: no reference yet), the retrain cooldown and the offsets."""

    model_name: str
    detector: dict[str, Any] | None
    last_request_end_ms: int | None
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    #: Where the output partitions (alerts, retrain requests) ended when it was written.
    outputs: dict[tuple[str, int], int] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "format": FORMAT,
            "model_name": self.model_name,
            "offsets": [[topic, partition, offset]
                        for (topic, partition), offset in sorted(self.offsets.items())],
            "outputs": [[topic, partition, offset]
                        for (topic, partition), offset in sorted(self.outputs.items())],
            "last_request_end_ms": self.last_request_end_ms,
            "detector": self.detector,
        })

    @classmethod
    def from_bytes(cls, raw: bytes) -> MonitorCheckpoint:
        data = orjson.loads(raw)
        if data.get("format") != FORMAT:
            raise ValueError(f"unsupported checkpoint format {data.get('format')!r}")
        return cls(model_name=data["model_name"], detector=data["detector"],
                   last_request_end_ms=data["last_request_end_ms"],
                   offsets={(topic, partition): offset
                            for topic, partition, offset in data["offsets"]},
                   outputs={(topic, partition): offset
                            for topic, partition, offset in data["outputs"]})

    @property
    def model_version(self) -> str | None:
        return None if self.detector is None else str(self.detector["model_version"])


class CheckpointFile:
    """Loads and saves the checkpoint file (atomically replaced)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def remove_leftovers(self) -> None:
        """Delete temp files a crash left mid-write (at start-up, before any save: a temp
        file being written looks the same as a left-over, so never while one may be)."""
        remove_temp_files(self.path.parent)

    def load(self) -> MonitorCheckpoint | None:
        """The last checkpoint; None if there is none or it cannot be read (logged).

        Read-only: safe while the service writes (the file is replaced atomically).
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return MonitorCheckpoint.from_bytes(raw)
        except (ValueError, KeyError, TypeError) as error:
            logger.error("checkpoint %s unreadable, starting without it: %s", self.path, error)
            return None

    def save(self, checkpoint: MonitorCheckpoint) -> int:
        """Write the checkpoint; return its size in bytes."""
        blob = checkpoint.to_bytes()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(self.path, blob, durable=True)
        return len(blob)
