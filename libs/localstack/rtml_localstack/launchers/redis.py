"""Redis (the online feature store), from the system's ``redis-server``.

Debian's ``redis-server`` package is a plain binary here (it starts no daemon
in a container); the stack runs its own instance bound to 127.0.0.1 without
persistence, because features are rebuilt from Kafka. It starts in ~10 ms.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import ClassVar

from rtml_localstack.launchers.base import ComponentLauncher, NotReady


def redis_server_bin() -> str | None:
    """``$RTML_REDIS_SERVER_BIN`` or ``redis-server`` on PATH."""
    override = os.environ.get("RTML_REDIS_SERVER_BIN")
    if override:
        return override if os.access(override, os.X_OK) else None
    return shutil.which("redis-server")


class RedisLauncher(ComponentLauncher):
    """redis-server on ``host:port``, no RDB/AOF persistence."""

    name: ClassVar[str] = "redis"
    default_port: ClassVar[int] = 6379
    description: ClassVar[str] = "Online feature store (Redis)"
    start_timeout_s: ClassVar[float] = 15.0

    @property
    def url(self) -> str:
        """redis:// URL of database 0."""
        return f"redis://{self.address}/0"

    def unavailable(self) -> str | None:
        if redis_server_bin() is None:
            return (
                "redis-server is not installed: run scripts/install-system-deps.sh "
                "(as root: apt-get install -y redis-server), or set RTML_REDIS_SERVER_BIN"
            )
        return None

    def prepare(self, state_dir: Path) -> None:
        self.workdir(state_dir).mkdir(parents=True, exist_ok=True)

    def command(self, state_dir: Path) -> list[str]:
        return [
            str(redis_server_bin()),
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir(state_dir)),
            "--daemonize", "no",
        ]  # fmt: skip

    def health_check(self, timeout_s: float = 2.0) -> None:
        import redis

        client = redis.Redis(
            host=self.host,
            port=self.port,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
        try:
            if not client.ping():
                raise NotReady("PING did not answer PONG")
        except redis.RedisError as exc:
            raise NotReady(f"PING failed: {exc}") from exc
        finally:
            client.close()

    def client_env(self) -> dict[str, str]:
        return {"RTML_REDIS_URL": self.url}
