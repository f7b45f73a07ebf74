"""Run the gate: the clean worker process under a timeout, then the champion comparison.

A worker that hangs is killed at ``timeout_s``; one that crashes (a model
that segfaults its library, say) or prints no report counts as a failed
``worker`` check carrying the tail of its stderr, so the refusal says what
went wrong instead of "internal error".

The worker gets a minimal environment: the interpreter's own path
variables, locale, temp dir, proxies and the MLflow / cloud-storage
credentials it may need to read artifacts, but never the registry's API key
or any other ``RTML_*`` setting, since loading a River model unpickles code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

from rtml_common.events import utcnow
from rtml_model_registry.config import Settings
from rtml_model_registry.gate.compare import compare_with_champion
from rtml_model_registry.gate.report import METRICS, WORKER, Check, GateReport
from rtml_models.aliases import CHAMPION
from rtml_models.registry.base import ModelRegistry, ModelVersion

#: Environment variables passed to the worker: exact names, then prefixes.
_ENV_NAMES = {"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "SYSTEMROOT",
              "PYTHONPATH", "VIRTUAL_ENV", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
              "http_proxy", "https_proxy", "no_proxy", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE",
              # the feature repo a candidate's feature set is declared in (a folder path)
              "RTML_FEATURE_REPO"}
_ENV_PREFIXES = ("MLFLOW_", "AWS_", "AZURE_", "GOOGLE_")
#: Characters of the worker's stderr kept in a failed ``worker`` check.
STDERR_TAIL = 1500


def worker_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The subset of ``environ`` the worker may see (see the module docstring)."""
    env = {k: v for k, v in environ.items()
           if k in _ENV_NAMES or k.startswith(_ENV_PREFIXES)}
    env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    return env


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= STDERR_TAIL else "..." + text[-STDERR_TAIL:]


class Gate(Protocol):
    """What the API needs from a gate (the tests pass the real one)."""

    def run(self, name: str, version: str, alias: str | None,
            compare_metrics: bool = True) -> GateReport:
        """Check ``name`` v``version`` for ``alias``; never raises for a bad model."""
        ...


class SubprocessGate:
    """The gate of issue #4: clean-process checks plus the metric comparison.

    Workers run one at a time: two gates timing ``predict_one`` side by side
    on a small machine would skew each other's p99 (gates are rare; a second
    request waits for the first).
    """

    def __init__(self, registry: ModelRegistry, tracking_uri: str, *, feature_set: str,
                 latency_budget_ms: float, samples: int, timeout_s: float,
                 champion_metric: str, max_metric_drop: float,
                 python: str = sys.executable) -> None:
        self.registry = registry
        self.tracking_uri = tracking_uri
        self.feature_set = feature_set
        self.latency_budget_ms = latency_budget_ms
        self.samples = samples
        self.timeout_s = timeout_s
        self.champion_metric = champion_metric
        self.max_metric_drop = max_metric_drop
        self.python = python
        self._one_at_a_time = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, registry: ModelRegistry,
                      tracking_uri: str) -> SubprocessGate:
        return cls(registry, tracking_uri, feature_set=settings.feature_set,
                   latency_budget_ms=settings.latency_budget_ms,
                   samples=settings.latency_samples, timeout_s=settings.gate_timeout_s,
                   champion_metric=settings.champion_metric,
                   max_metric_drop=settings.max_metric_drop)

    def command(self, name: str, version: str) -> list[str]:
        return [self.python, "-m", "rtml_model_registry.gate.worker",
                "--tracking-uri", self.tracking_uri, "--name", name, "--version", version,
                "--feature-set", self.feature_set, "--samples", str(self.samples),
                "--latency-budget-ms", repr(self.latency_budget_ms)]

    def run(self, name: str, version: str, alias: str | None,
            compare_metrics: bool = True) -> GateReport:
        started_at = utcnow()
        start = time.perf_counter()
        checks, timings = self._run_worker(name, version)
        timings["worker"] = round((time.perf_counter() - start) * 1000, 2)
        metric_start = time.perf_counter()
        checks.append(self._metrics_check(name, version, alias, compare_metrics))
        timings["metrics"] = round((time.perf_counter() - metric_start) * 1000, 2)
        timings["total"] = round((time.perf_counter() - start) * 1000, 2)
        return GateReport(model=name, version=version, alias=alias,
                          passed=not any(check.failed for check in checks), checks=checks,
                          timings_ms=timings, started_at=started_at)

    def _run_worker(self, name: str, version: str) -> tuple[list[Check], dict[str, float]]:
        try:
            with self._one_at_a_time:
                result = subprocess.run(self.command(name, version), capture_output=True,
                                        text=True, timeout=self.timeout_s,
                                        env=worker_environment(os.environ), check=False)
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) \
                else (exc.stderr or "")
            return [Check.fail(WORKER, f"the gate worker did not finish within "
                               f"{self.timeout_s:g} s and was killed; stderr: "
                               f"{_tail(stderr) or '(empty)'}")], {}
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        if result.returncode != 0 or not lines:
            return [Check.fail(WORKER, f"the gate worker exited with code {result.returncode} "
                               f"without a report; stderr: {_tail(result.stderr) or '(empty)'}",
                               exit_code=result.returncode)], {}
        try:
            raw: dict[str, Any] = json.loads(lines[-1])
            checks = [Check.model_validate(item) for item in raw["checks"]]
            timings = {str(k): float(v) for k, v in raw["timings_ms"].items()}
        except (ValueError, KeyError, TypeError) as exc:
            return [Check.fail(WORKER, f"the gate worker's report is unreadable ({exc}); "
                               f"stderr: {_tail(result.stderr) or '(empty)'}")], {}
        worker = Check.ok(WORKER, f"checked in a clean process ({self.python})")
        return [worker, *checks], timings

    def _metrics_check(self, name: str, version: str, alias: str | None,
                       compare_metrics: bool) -> Check:
        if alias != CHAMPION:
            return Check.skip(METRICS, f"only a new {CHAMPION} is compared with the current one")
        if not compare_metrics:
            return Check.skip(METRICS, "a rollback restores an earlier champion: not compared")
        try:
            candidate: ModelVersion = self.registry.get_version(name, version)
            champion = self.registry.version_for_alias(name, CHAMPION)
        except Exception as exc:  # the comparison can't be made: refuse, saying why
            return Check.fail(METRICS, f"could not read the metrics to compare: "
                              f"{type(exc).__name__}: {exc}")
        return compare_with_champion(candidate, champion, self.champion_metric,
                                     self.max_metric_drop)
