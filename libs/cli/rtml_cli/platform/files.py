"""The platform's files in the stack's state directory.

``rtml up``, the supervisor, ``status`` and ``down`` are separate processes,
so they share what they know through two files under ``<state>/platform``:

* ``spec.json`` (mode 0600: it holds the generated API keys), written by
  ``up``: the services to run with their environments, the chosen ports,
  and which stack components ``up`` itself started (``down`` stops only
  those);
* ``platform.json``, written only by the supervisor, atomically (readers
  never see half a file): its own pid and metrics port, and per service
  pid, ports, state, health, restarts and start time.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rtml_cli.platform.catalog import PlatformPorts, ServiceSpec
from rtml_common.files import write_bytes_atomically

SPEC_VERSION = 1


class PlatformError(RuntimeError):
    """``up``/``down`` cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class PlatformPaths:
    """Where one state directory keeps the platform's files."""

    state_dir: Path

    @property
    def root(self) -> Path:
        return self.state_dir / "platform"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def spec(self) -> Path:
        return self.root / "spec.json"

    @property
    def status(self) -> Path:
        return self.root / "platform.json"

    @property
    def supervisor_log(self) -> Path:
        return self.logs / "supervisor.log"

    def log(self, service: str) -> Path:
        return self.logs / f"{service}.log"


@dataclass
class PlatformSpec:
    """What ``up`` decided; the supervisor runs exactly this."""

    state_dir: str
    ports: PlatformPorts
    services: list[ServiceSpec] = field(default_factory=list)
    #: Stack components this ``up`` started (``down`` stops these and no others).
    stack_started: list[str] = field(default_factory=list)
    #: Whether the stack's Prometheus runs (then the services are registered as targets).
    prometheus: bool = False
    created_at: str = ""
    #: The supervisor ``up`` started: pid, start_marker, program (empty before that).
    supervisor: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        data = {"version": SPEC_VERSION, "state_dir": self.state_dir,
                "ports": asdict(self.ports), "services": [s.to_dict() for s in self.services],
                "stack_started": self.stack_started, "prometheus": self.prometheus,
                "created_at": self.created_at or now_iso(),
                "supervisor": self.supervisor}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, (json.dumps(data, indent=2) + "\n").encode(),
                               durable=False, mode=0o600)

    @classmethod
    def load(cls, path: Path) -> PlatformSpec:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise PlatformError(f"unreadable platform spec {path}: {exc}") from exc
        if raw.get("version") != SPEC_VERSION:
            raise PlatformError(f"{path} has version {raw.get('version')!r}, this rtml reads "
                                f"{SPEC_VERSION}; remove the platform directory and `up` again")
        return cls(state_dir=raw["state_dir"], ports=PlatformPorts(**raw["ports"]),
                   services=[ServiceSpec.from_dict(s) for s in raw["services"]],
                   stack_started=list(raw.get("stack_started", [])),
                   prometheus=bool(raw.get("prometheus")), created_at=raw.get("created_at", ""),
                   supervisor=dict(raw.get("supervisor") or {}))


def now_iso() -> str:
    """Current UTC time, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def uptime_s(started_at: str | None) -> float | None:
    """Seconds since an ISO time written by :func:`now_iso` (None if not started)."""
    if not started_at:
        return None
    return max(0.0, (datetime.now(UTC) - datetime.fromisoformat(started_at)).total_seconds())


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Write ``platform.json`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(path, (json.dumps(status, indent=2) + "\n").encode(), durable=False)


def read_status(path: Path) -> dict[str, Any] | None:
    """``platform.json``, or None when there is none (the platform never ran here)."""
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PlatformError(f"unreadable platform status {path}: {exc}") from exc
    return raw
