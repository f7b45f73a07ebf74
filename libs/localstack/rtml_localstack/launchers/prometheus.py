"""Prometheus (metrics), from the system's ``prometheus`` binary when installed.

Optional: ``up`` skips it with a note when the binary is missing. Scrape
targets come from two places: the stack's own (Prometheus itself; the other
servers have no Prometheus endpoint) in the generated config, and file-based
service discovery: every ``*.json`` file in ``<state>/prometheus/targets/``
is a list of target groups. Services started later register themselves by
writing such a file (:func:`write_targets`), without restarting Prometheus.
New targets are picked up within ~5 s (the scrape manager's reload
throttle), and the first scrape follows within one interval.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from rtml_common.files import write_bytes_atomically
from rtml_localstack.launchers.base import ComponentLauncher, NotReady
from rtml_localstack.ports import LOCALHOST

_JOB_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def prometheus_bin() -> str | None:
    """``$RTML_PROMETHEUS_BIN`` or ``prometheus`` on PATH."""
    override = os.environ.get("RTML_PROMETHEUS_BIN")
    if override:
        return override if os.access(override, os.X_OK) else None
    return shutil.which("prometheus")


def targets_dir(state_dir: Path) -> Path:
    """Directory of file_sd target files for a stack's Prometheus."""
    return state_dir / "prometheus" / "targets"


def write_targets(
    state_dir: Path,
    job: str,
    targets: Sequence[str],
    labels: Mapping[str, str] | None = None,
) -> Path:
    """Make Prometheus scrape ``targets`` (``host:port``, path /metrics) as ``job``.

    Writes ``<state>/prometheus/targets/<job>.json`` atomically (Prometheus
    watches the directory and must never read a half-written file).
    Replaces the job's previous targets.
    """
    if not _JOB_NAME.match(job):
        raise ValueError(f"job name {job!r}: use letters, digits, '_', '.', '-'")
    directory = targets_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    groups = [{"targets": list(targets), "labels": {"job": job, **(labels or {})}}]
    final = directory / f"{job}.json"
    # The temp name ends in .tmp, not .json: Prometheus never picks it up.
    return write_bytes_atomically(final, (json.dumps(groups, indent=2) + "\n").encode(),
                                  durable=False)


def remove_targets(state_dir: Path, job: str) -> bool:
    """Stop scraping ``job``; True if it had a target file."""
    path = targets_dir(state_dir) / f"{job}.json"
    if path.exists():
        path.unlink()
        return True
    return False


class PrometheusLauncher(ComponentLauncher):
    """prometheus on ``host:port`` with a generated config and file_sd targets."""

    name: ClassVar[str] = "prometheus"
    default_port: ClassVar[int] = 9090
    description: ClassVar[str] = "Metrics (Prometheus)"
    start_timeout_s: ClassVar[float] = 30.0
    optional: ClassVar[bool] = True

    def __init__(
        self, port: int | None = None, host: str = LOCALHOST, scrape_interval_s: int = 5
    ) -> None:
        """``scrape_interval_s``: shorter in tests so a first scrape comes sooner."""
        super().__init__(port, host)
        self.scrape_interval_s = scrape_interval_s

    @property
    def url(self) -> str:
        """Base URL of the web UI and HTTP API."""
        return f"http://{self.address}"

    def unavailable(self) -> str | None:
        if prometheus_bin() is None:
            return (
                "prometheus is not installed (optional): run scripts/install-system-deps.sh "
                "(as root: apt-get install -y prometheus)"
            )
        return None

    def prepare(self, state_dir: Path) -> None:
        workdir = self.workdir(state_dir).resolve()
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        targets = targets_dir(state_dir.resolve())
        targets.mkdir(parents=True, exist_ok=True)
        interval = f"{self.scrape_interval_s}s"
        # JSON is valid YAML: no YAML library needed to write the config.
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {"job_name": "prometheus", "static_configs": [{"targets": [self.address]}]},
                {
                    "job_name": "rtml",
                    "file_sd_configs": [
                        {"files": [str(targets / "*.json")], "refresh_interval": interval}
                    ],
                },
            ],
        }
        (workdir / "prometheus.yml").write_text(json.dumps(config, indent=2) + "\n")

    def command(self, state_dir: Path) -> list[str]:
        workdir = self.workdir(state_dir).resolve()
        return [
            str(prometheus_bin()),
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--web.listen-address={self.address}",
            f"--storage.tsdb.path={workdir / 'data'}",
            "--storage.tsdb.retention.time=7d",
            "--web.enable-lifecycle",
        ]

    def health_check(self, timeout_s: float = 2.0) -> None:
        import httpx

        try:
            response = httpx.get(f"{self.url}/-/ready", timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise NotReady(f"GET /-/ready: {exc}") from exc
        if response.status_code != 200:
            raise NotReady(f"GET /-/ready answered {response.status_code}")

    def client_env(self) -> dict[str, str]:
        return {"RTML_PROMETHEUS_URL": self.url}

    def options(self) -> dict[str, Any]:
        return {"scrape_interval_s": self.scrape_interval_s}
