"""The durable book of retrain requests: pending until trained, remembered once done.

A request may wait days for its labels to mature, far longer than a Kafka
offset should stay uncommitted, so it is written to ``requests.json`` in the
archive directory (atomically, :mod:`.files`) *before* its offset is
committed: a crash between the two re-delivers it, and the book recognises
the ``request_id`` (one request, one training). Requests for the worker's
model that are pending together are trained together, as soon as the
earliest of them can be (:func:`.plan.decide`): a burst of drift alerts
leads to one challenger whose lineage names all of them, and a request
arriving after that training started waits for the next one. Finished
requests are kept (the newest ``keep_finished``) so a late duplicate is
still recognised.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from rtml_common.events import RetrainRequest, utcnow
from rtml_common.files import write_bytes_atomically

logger = logging.getLogger(__name__)

REQUESTS_FILE = "requests.json"


class Status(StrEnum):
    """Where a request is."""

    PENDING = "pending"
    #: A challenger was trained, registered and set as the ``challenger`` alias.
    DONE = "done"
    #: Gave up: the data did not allow a split, training kept failing, or the registry refused.
    FAILED = "failed"
    #: For another model than this worker's.
    IGNORED = "ignored"


class Outcome(StrEnum):
    """What recording a delivered request did."""

    NEW = "new"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


@dataclass(frozen=True)
class Entry:
    """A request and its fate."""

    request: RetrainRequest
    status: Status
    received_at: datetime
    updated_at: datetime
    detail: str = ""
    #: Registered version, once there is one (also on a failed alias change).
    version: str | None = None
    attempts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"request": self.request.model_dump(mode="json"), "status": self.status.value,
                "received_at": self.received_at.isoformat(),
                "updated_at": self.updated_at.isoformat(), "detail": self.detail,
                "version": self.version, "attempts": self.attempts}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        return cls(request=RetrainRequest.model_validate(data["request"]),
                   status=Status(data["status"]),
                   received_at=datetime.fromisoformat(data["received_at"]),
                   updated_at=datetime.fromisoformat(data["updated_at"]),
                   detail=data.get("detail", ""), version=data.get("version"),
                   attempts=int(data.get("attempts", 0)))


@dataclass
class RequestBook:
    """Thread-safe; every change is durable when the method returns."""

    path: Path
    model_name: str
    keep_finished: int = 1000
    _entries: dict[str, Entry] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, directory: Path, model_name: str, keep_finished: int = 1000) -> RequestBook:
        path = directory / REQUESTS_FILE
        book = cls(path, model_name, keep_finished)
        if path.exists():
            for data in orjson.loads(path.read_bytes())["requests"]:
                entry = Entry.from_json(data)
                book._entries[entry.request.request_id] = entry
        return book

    def record(self, requests: Iterable[RetrainRequest]) -> list[tuple[RetrainRequest, Outcome]]:
        """Add delivered requests (deduplicated by id); durable before returning."""
        outcomes = []
        with self._lock:
            now = utcnow()
            for request in requests:
                if request.request_id in self._entries:
                    outcomes.append((request, Outcome.DUPLICATE))
                    continue
                if request.model_name != self.model_name:
                    status, outcome = Status.IGNORED, Outcome.IGNORED
                    detail = f"this worker retrains {self.model_name!r}"
                else:
                    status, outcome, detail = Status.PENDING, Outcome.NEW, ""
                self._entries[request.request_id] = Entry(request, status, now, now, detail)
                outcomes.append((request, outcome))
            if any(outcome is not Outcome.DUPLICATE for _, outcome in outcomes):
                self._save()
        return outcomes

    def pending(self) -> list[Entry]:
        """Pending requests, oldest first: the next training's burst."""
        with self._lock:
            return sorted((e for e in self._entries.values() if e.status is Status.PENDING),
                          key=lambda e: (e.received_at, e.request.request_id))

    def get(self, request_id: str) -> Entry | None:
        with self._lock:
            return self._entries.get(request_id)

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries.values())

    def finish(self, request_ids: Iterable[str], status: Status, detail: str,
               version: str | None = None) -> None:
        """Mark requests done or failed (durably)."""
        self._update(request_ids, status=status, detail=detail, version=version)

    def note_failure(self, request_ids: Iterable[str], detail: str) -> int:
        """Count a failed training attempt; returns the attempts so far (the highest)."""
        with self._lock:
            attempts = 0
            for request_id in request_ids:
                entry = self._entries[request_id]
                attempts = max(attempts, entry.attempts + 1)
                self._entries[request_id] = replace(entry, attempts=entry.attempts + 1,
                                                    detail=detail, updated_at=utcnow())
            self._save()
            return attempts

    def _update(self, request_ids: Iterable[str], **changes: Any) -> None:
        with self._lock:
            now = utcnow()
            for request_id in request_ids:
                self._entries[request_id] = replace(self._entries[request_id], updated_at=now,
                                                    **changes)
            self._save()

    def _save(self) -> None:
        """Write the book (caller holds the lock); old finished entries are dropped first."""
        finished = sorted((e for e in self._entries.values() if e.status is not Status.PENDING),
                          key=lambda e: e.updated_at)
        for entry in finished[:max(len(finished) - self.keep_finished, 0)]:
            del self._entries[entry.request.request_id]
        data = {"requests": [e.to_json() for e in self._entries.values()]}
        write_bytes_atomically(self.path, orjson.dumps(data, option=orjson.OPT_INDENT_2))
