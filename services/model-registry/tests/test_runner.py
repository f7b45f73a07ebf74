"""The gate runner: a worker that hangs or crashes is a failed check, never an error.

No servers: the worker never gets as far as contacting MLflow, and without
the champion alias the metric comparison does not read the registry.
"""

from __future__ import annotations

import sys

from rtml_model_registry.gate.report import CheckStatus
from rtml_model_registry.gate.runner import SubprocessGate, worker_environment
from rtml_models.registry.mlflow import MlflowRegistry

NOWHERE = "http://127.0.0.1:9"


def gate(python: str = sys.executable, timeout_s: float = 60.0) -> SubprocessGate:
    return SubprocessGate(MlflowRegistry(NOWHERE), NOWHERE, feature_set="baseline",
                          latency_budget_ms=20, samples=10, timeout_s=timeout_s,
                          champion_metric="ap", max_metric_drop=0.01, python=python)


def test_a_crashing_worker_fails_the_worker_check_with_its_exit_code() -> None:
    report = gate(python="/bin/false").run("fraud", "1", "shadow")
    assert not report.passed
    assert [c.name for c in report.failures] == ["worker"]
    assert report.failures[0].detail == (
        "the gate worker exited with code 1 without a report; stderr: (empty)")
    assert {c.name: c.status for c in report.checks}["metrics"] is CheckStatus.SKIPPED


def test_a_hanging_worker_is_killed_at_the_timeout() -> None:
    # Interpreter start-up and the worker's imports alone take well over 1 s here.
    report = gate(timeout_s=0.05).run("fraud", "1", None)
    [failure] = report.failures
    assert failure.name == "worker"
    assert failure.detail.startswith("the gate worker did not finish within 0.05 s and was "
                                     "killed")


def test_the_worker_sees_no_rtml_settings_or_secrets() -> None:
    env = worker_environment({"PATH": "/bin", "RTML_MODEL_REGISTRY_API_KEY": "secret" * 4,
                              "MLFLOW_TRACKING_TOKEN": "t", "AWS_ACCESS_KEY_ID": "a",
                              "SOME_OTHER_SECRET": "s", "RTML_FEATURE_REPO": "/repo",
                              "RTML_FEATURE_SET": "payments"})
    assert env["PATH"] == "/bin"
    # the folder a candidate's feature set is declared in: the worker resolves the set there
    assert env["RTML_FEATURE_REPO"] == "/repo"
    assert "RTML_FEATURE_SET" not in env  # the set itself comes with the candidate
    assert env["MLFLOW_TRACKING_TOKEN"] == "t"
    assert "RTML_MODEL_REGISTRY_API_KEY" not in env
    assert "SOME_OTHER_SECRET" not in env


def test_the_command_names_everything_the_worker_needs() -> None:
    command = gate().command("fraud", "3")
    assert command[1:3] == ["-m", "rtml_model_registry.gate.worker"]
    assert command[command.index("--version") + 1] == "3"
    assert command[command.index("--latency-budget-ms") + 1] == "20"
