"""The stack's state directory and its ``stack.json``.

Every CLI invocation is a new process, so what ``up`` started must be
written down for ``status``, ``env`` and ``down`` to find: per component the
pid with its identity (start-time marker, program), port, start time,
command and log path. Writes are atomic (temp file + rename) and whole
operations hold a lock file, so two ``up`` runs can't interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rtml_common.files import write_bytes_atomically
from rtml_localstack.process import ProcessIdentity

STATE_FILE = "stack.json"
STATE_VERSION = 1
DEFAULT_STATE_DIR = Path(".rtml") / "stack"


def default_state_dir() -> Path:
    """``$RTML_STATE_DIR``, else ``.rtml/stack`` under the current directory (absolute)."""
    env = os.environ.get("RTML_STATE_DIR")
    return Path(env).expanduser().resolve() if env else (Path.cwd() / DEFAULT_STATE_DIR)


@dataclass
class ComponentRecord:
    """One started server process, as written to ``stack.json``."""

    pid: int
    port: int
    host: str
    started_at: str
    command: list[str]
    log: str
    start_marker: str = ""
    program: str = ""
    #: Launcher options needed to rebuild the launcher (e.g. durable, s3_port).
    options: dict[str, Any] = field(default_factory=dict)
    #: Seconds from spawn to healthy, once known.
    startup_s: float | None = None

    @property
    def identity(self) -> ProcessIdentity:
        """What :func:`rtml_localstack.process.stop` verifies before signalling."""
        return ProcessIdentity(self.pid, self.start_marker, self.program)

    def uptime_s(self, now: datetime | None = None) -> float:
        """Seconds since start."""
        started = datetime.fromisoformat(self.started_at)
        return ((now or datetime.now(UTC)) - started).total_seconds()


def now_iso() -> str:
    """Current UTC time, ISO 8601 (what ``started_at`` holds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class StackState:
    """``stack.json`` of one state directory: component name -> record."""

    def __init__(self, state_dir: Path, components: dict[str, ComponentRecord] | None = None):
        self.state_dir = state_dir
        self.components: dict[str, ComponentRecord] = components or {}

    @property
    def path(self) -> Path:
        return self.state_dir / STATE_FILE

    @classmethod
    def load(cls, state_dir: Path) -> StackState:
        """Read the state file; an absent file is an empty stack."""
        path = state_dir / STATE_FILE
        if not path.exists():
            return cls(state_dir)
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"unreadable state file {path}: {exc}") from exc
        known = set(ComponentRecord.__dataclass_fields__)
        components = {
            name: ComponentRecord(**{k: v for k, v in rec.items() if k in known})
            for name, rec in raw.get("components", {}).items()
        }
        return cls(state_dir, components)

    def save(self) -> None:
        """Write atomically (readers never see a half-written file)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "version": STATE_VERSION,
            "components": {name: asdict(rec) for name, rec in self.components.items()},
        }
        write_bytes_atomically(self.path, (json.dumps(data, indent=2) + "\n").encode(),
                               durable=False)


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """Hold the state directory's lock for a whole up/down operation."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
