"""What the gate found: named checks, each passed, failed or skipped, with a precise detail.

The report is stored verbatim in the audit entry of the alias change it
allowed and returned by the API when it refuses, so its details are written
for a person deciding what to fix ("12 of 2000 held-out scores are NaN (first
at row 3)"), not for a log parser; machine-readable numbers go in ``data``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Check names (stable: API clients and the refusal metric's label use them).
LOAD = "load"
FEATURE_SET = "feature_set"
SIGNATURE = "signature"
HOLDOUT = "holdout"
SCORES = "scores"
LATENCY = "latency"
WORKER = "worker"
METRICS = "metrics"


class CheckStatus(StrEnum):
    """Outcome of one check; ``skipped`` never refuses (it says why it did not run)."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class Check(BaseModel):
    """One named check of the gate."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Stable check name, e.g. 'scores' or 'latency'.",
                      examples=[LATENCY])
    status: CheckStatus
    detail: str = Field(description="What was checked and found, for a person.",
                        examples=["p99 single-row latency 0.41 ms within the 20 ms budget "
                                  "(p50 0.15 ms, 500 calls)"])
    data: dict[str, Any] = Field(default_factory=dict,
                                 description="The check's numbers (e.g. p50_ms, p99_ms).")

    @property
    def failed(self) -> bool:
        return self.status is CheckStatus.FAILED

    @classmethod
    def ok(cls, name: str, detail: str, **data: Any) -> Check:
        return cls(name=name, status=CheckStatus.PASSED, detail=detail, data=data)

    @classmethod
    def fail(cls, name: str, detail: str, **data: Any) -> Check:
        return cls(name=name, status=CheckStatus.FAILED, detail=detail, data=data)

    @classmethod
    def skip(cls, name: str, detail: str, **data: Any) -> Check:
        return cls(name=name, status=CheckStatus.SKIPPED, detail=detail, data=data)


class GateReport(BaseModel):
    """Every check the gate ran on one version, and how long the gate took."""

    model_config = ConfigDict(frozen=True)

    model: str = Field(examples=["fraud-detector"])
    version: str = Field(examples=["3"])
    alias: str | None = Field(description="The alias the version was checked for (None for a "
                              "dry run without one).", examples=["champion"])
    passed: bool = Field(description="True when no check failed.")
    checks: list[Check]
    timings_ms: dict[str, float] = Field(
        default_factory=dict,
        description="Wall time of the gate's phases: worker (the whole clean process, "
        "start-up included), load, holdout, score, latency, metrics, total.",
    )
    started_at: datetime

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if check.failed]

    def summary(self) -> str:
        """One line naming every failed check and why (or that all passed)."""
        failures = self.failures
        if not failures:
            return f"{self.model} v{self.version} passed the gate"
        reasons = "; ".join(f"{check.name}: {check.detail}" for check in failures)
        target = f" for {self.alias}" if self.alias else ""
        return f"gate refused {self.model} v{self.version}{target}: {reasons}"
