"""The contract every component launcher implements.

Modelled on Feast's online-store interface: the orchestrator
(:mod:`rtml_localstack.stack`) knows nothing about Kafka or Cassandra; it only
calls these methods, so a component is added by writing one small module and
registering it in :mod:`rtml_localstack.launchers`. The CLI and the pytest
fixtures drive the same launchers, so what tests run is what developers run.

Life cycle, as the orchestrator drives it::

    problem = launcher.unavailable()        # binary missing? -> clear message
    launcher.prepare(state_dir)             # dirs, config files, downloads
    spawn(launcher.command(state_dir), env=launcher.env(state_dir))
    launcher.health_check(timeout_s)        # polled until it stops raising
    launcher.bootstrap(state_dir)           # topics, keyspace (idempotent)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from rtml_localstack.errors import ComponentUnavailable, NotReady
from rtml_localstack.ports import LOCALHOST

__all__ = ["ComponentLauncher", "ComponentUnavailable", "NotReady"]


class ComponentLauncher(ABC):
    """How to prepare, start, probe and bootstrap one server process.

    A launcher instance is configuration only (host, port, options) and holds
    no process state: the orchestrator keeps pids in the state file, so any
    later CLI invocation can stop what an earlier one started.
    """

    #: Component name used on the command line and in the state file.
    name: ClassVar[str]
    #: Port used when none is configured.
    default_port: ClassVar[int]
    #: One line for ``status`` and docs.
    description: ClassVar[str] = ""
    #: How long a cold start may take before it counts as failed.
    start_timeout_s: ClassVar[float] = 30.0
    #: How long a SIGTERM'd server may take to exit before SIGKILL.
    stop_timeout_s: float = 15.0
    #: Whether ``up`` silently skips it when :meth:`unavailable` reports a
    #: problem (optional components such as Prometheus) instead of failing.
    optional: ClassVar[bool] = False

    def __init__(self, port: int | None = None, host: str = LOCALHOST) -> None:
        self.host = host
        self.port = port if port is not None else self.default_port

    # -- what to run ---------------------------------------------------------

    def unavailable(self) -> str | None:
        """Why this component can't run on this machine, or None if it can."""
        return None

    def prepare(self, state_dir: Path) -> None:  # noqa: B027 - optional hook
        """Create directories and config files under ``self.workdir(state_dir)``.

        Runs before every start; must be idempotent and keep existing data.
        """

    @abstractmethod
    def command(self, state_dir: Path) -> list[str]:
        """The argument vector that starts the server in the foreground."""

    def env(self, state_dir: Path) -> dict[str, str]:
        """Extra environment variables for the server process."""
        return {}

    def requires(self) -> list[ComponentLauncher]:
        """Launchers that must be healthy before this one starts."""
        return []

    # -- readiness and set-up -----------------------------------------------

    @abstractmethod
    def health_check(self, timeout_s: float = 2.0) -> None:
        """One readiness probe; raise :class:`NotReady` with the reason if not ready."""

    def bootstrap(self, state_dir: Path) -> list[str]:
        """Idempotent set-up once healthy (topics, keyspace); returns what it did."""
        return []

    # -- for clients ---------------------------------------------------------

    def client_env(self) -> dict[str, str]:
        """Environment variables services need to reach this component."""
        return {}

    def options(self) -> dict[str, Any]:
        """Launch options worth recording in the state file (e.g. durable)."""
        return {}

    # -- helpers -------------------------------------------------------------

    def workdir(self, state_dir: Path) -> Path:
        """This component's directory inside the stack's state directory."""
        return state_dir / self.name

    def log_path(self, state_dir: Path) -> Path:
        """Where the server's stdout/stderr go."""
        return state_dir / "logs" / f"{self.name}.log"

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(host={self.host!r}, port={self.port})"
