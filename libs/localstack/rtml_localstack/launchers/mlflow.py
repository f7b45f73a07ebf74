"""The MLflow tracking server and model registry, with lean settings.

With its defaults ``mlflow server`` forks about a dozen processes and takes
~3 GB; with one uvicorn worker and the job-execution subsystem off it is up
in ~4 s with ~480 MB. The backend store is a SQLite file and artifacts are
served (proxied) by the server from a directory, both in the state directory,
so clients upload through HTTP exactly as they would to a remote server.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import ClassVar

from rtml_localstack.launchers.base import ComponentLauncher, NotReady


class MlflowLauncher(ComponentLauncher):
    """``python -m mlflow server`` with the current interpreter."""

    name: ClassVar[str] = "mlflow"
    default_port: ClassVar[int] = 5000
    description: ClassVar[str] = "Model registry (MLflow server)"
    start_timeout_s: ClassVar[float] = 90.0

    @property
    def tracking_uri(self) -> str:
        """What to pass to ``mlflow.set_tracking_uri``."""
        return f"http://{self.address}"

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("mlflow") is None:
            return f"mlflow is not installed in {sys.executable}: pip install 'mlflow==3.17.*'"
        return None

    def prepare(self, state_dir: Path) -> None:
        (self.workdir(state_dir) / "artifacts").mkdir(parents=True, exist_ok=True)

    def command(self, state_dir: Path) -> list[str]:
        workdir = self.workdir(state_dir).resolve()
        return [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination", str(workdir / "artifacts"),
            "--serve-artifacts",
            "--host", self.host,
            "--port", str(self.port),
            "--workers", "1",
        ]  # fmt: skip

    def env(self, state_dir: Path) -> dict[str, str]:
        return {
            # The background job runner forks extra workers; the platform
            # doesn't use MLflow jobs.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            # No usage telemetry from a developer's machine (and no network).
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PYTHONUNBUFFERED": "1",
        }

    def health_check(self, timeout_s: float = 2.0) -> None:
        import httpx

        try:
            response = httpx.get(f"{self.tracking_uri}/health", timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise NotReady(f"GET /health: {exc}") from exc
        if response.status_code != 200:
            raise NotReady(f"GET /health answered {response.status_code}")

    def client_env(self) -> dict[str, str]:
        return {
            "RTML_MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
        }
