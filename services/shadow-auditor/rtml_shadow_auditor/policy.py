"""The graduation policy: when a shadow has earned the champion alias.

Every check must pass (each failure is a reason the verdict names):

* ``labels`` — at least ``graduation_min_labels`` matured labels on
  transactions both models scored;
* ``frauds`` — at least ``graduation_min_frauds`` frauds among them (AP on a
  handful of positives is noise);
* ``ap`` — the shadow's average precision is at least the champion's **on the
  same transactions** plus ``ap_margin``;
* ``latency`` — the shadow's p99 latency over the recent window is within
  ``latency_sla_ms``;
* ``errors`` — at most ``max_errors`` errors in the recent window.

Pure: no I/O, so every refusal reason is unit-tested on made-up audits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from rtml_shadow_auditor.audit import VersionAudit
from rtml_shadow_auditor.config import Settings

Decision = Literal["graduate", "hold"]


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    """The policy's answer for one shadow version against one champion version."""

    model_version: str
    champion_version: str
    decision: Decision
    checks: tuple[Check, ...]
    evaluated_at: str
    summary: str

    @property
    def graduate(self) -> bool:
        return self.decision == "graduate"

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]

    @property
    def reasons(self) -> list[str]:
        """Why not (hold), or why yes (graduate): one sentence per check."""
        return [c.detail for c in self.checks if c.passed != (self.decision == "hold")]

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["failed"] = self.failed
        return body


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def judge(audit: VersionAudit, settings: Settings, evaluated_at: datetime) -> Verdict:
    """Apply the policy to one shadow's audit."""
    if audit.champion_version is None:
        raise ValueError("only shadows are judged (the audit has no champion version)")
    checks: list[Check] = []
    n, frauds = audit.matured_labels, audit.frauds
    checks.append(Check("labels", n >= settings.graduation_min_labels,
                        f"{n} matured labels on paired transactions (need "
                        f"{settings.graduation_min_labels})"))
    checks.append(Check("frauds", frauds >= settings.graduation_min_frauds,
                        f"{frauds} frauds among them (need {settings.graduation_min_frauds})"))
    ap = audit.metrics.ap if audit.metrics else None
    champion_ap = audit.champion_metrics.ap if audit.champion_metrics else None
    if ap is None or champion_ap is None:
        checks.append(Check("ap", False, "average precision is not defined yet (no matured "
                                         "labels of both classes)"))
    else:
        need = champion_ap + settings.ap_margin
        checks.append(Check("ap", ap >= need,
                            f"AP {_fmt(ap)} vs champion {_fmt(champion_ap)} on the same "
                            f"transactions (need >= {_fmt(need)}, margin {settings.ap_margin:g})"))
    p99 = audit.latency_p99_ms
    if p99 is None:
        checks.append(Check("latency", False, "no latency samples in the window"))
    else:
        checks.append(Check("latency", p99 <= settings.latency_sla_ms,
                            f"p99 latency {p99:.2f} ms (SLA {settings.latency_sla_ms:g} ms)"))
    errors = audit.error_count
    detail = ", ".join(f"{k} {v}" for k, v in sorted(audit.errors.items()) if v) or "none"
    checks.append(Check("errors", errors <= settings.max_errors,
                        f"{errors} errors in the window ({detail}; allowed "
                        f"{settings.max_errors})"))
    decision: Decision = "graduate" if all(c.passed for c in checks) else "hold"
    failed = [c.name for c in checks if not c.passed]
    if decision == "graduate":
        summary = (f"v{audit.model_version} graduates over champion v{audit.champion_version}: "
                   f"AP {_fmt(ap)} vs {_fmt(champion_ap)} on {n} labels ({frauds} frauds), "
                   f"p99 {_fmt(p99, 2)} ms <= {settings.latency_sla_ms:g} ms, {errors} errors")
    else:
        summary = (f"v{audit.model_version} holds against champion v{audit.champion_version}: "
                   f"failed {', '.join(failed)}")
    return Verdict(audit.model_version, audit.champion_version, decision, tuple(checks),
                   evaluated_at.isoformat(), summary)
