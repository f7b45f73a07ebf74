"""Counters of a traffic run: the periodic progress line and the final summary.

Latencies are the client's round trip (what a caller of the API waits),
kept whole for the summary (8 bytes a request: 1.4 MB an hour at 50 req/s)
and per interval for the progress line.
"""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rtml_cli.traffic.sender import Answer


def percentiles_ms(latencies_s: array[float]) -> dict[str, float | None]:
    """p50 / p99 / max in milliseconds (None without samples)."""
    if not latencies_s:
        return {"p50": None, "p99": None, "max": None}
    values = np.frombuffer(latencies_s, dtype=np.float64) * 1000.0
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3),
            "max": round(float(values.max()), 3)}


def _score(decision: dict[str, Any] | None) -> float:
    """A decision's score for ranking declines (-1 without one: a scored decline wins)."""
    score = decision.get("score") if decision else None
    return float(score) if isinstance(score, int | float) else -1.0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"


@dataclass
class TrafficStats:
    """Answers counted by kind."""

    answered: int = 0
    ok: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    degraded: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_s: array[float] = field(default_factory=lambda: array("d"))
    window_s: array[float] = field(default_factory=lambda: array("d"))
    #: The highest-scoring decline so far (its whole decision), shown by the summary.
    example_decline: dict[str, Any] | None = None

    def record(self, answer: Answer) -> None:
        self.answered += 1
        self.latencies_s.append(answer.latency_s)
        self.window_s.append(answer.latency_s)
        if answer.status is not None:
            self.statuses[answer.status] += 1
        if answer.error is not None:
            self.errors[answer.error] += 1
        if answer.accepted and answer.outcome is not None:
            self.ok += 1
            self.outcomes[answer.outcome] += 1
            self.degraded += answer.degraded
            if answer.decision is not None and (
                    self.example_decline is None
                    or _score(answer.decision) > _score(self.example_decline)):
                self.example_decline = answer.decision

    def count_status(self, low: int) -> int:
        """Answers with a status in ``[low, low + 100)`` (4xx: 400, 5xx: 500)."""
        return sum(n for status, n in self.statuses.items() if low <= status < low + 100)

    def take_window(self) -> dict[str, float | None]:
        """Latency percentiles since the last call (the progress line's interval)."""
        window, self.window_s = self.window_s, array("d")
        return percentiles_ms(window)

    def progress_line(self, *, elapsed_s: float, sent: int, behind: int, idle: int,
                      in_flight: int, labels_produced: int, labels_waiting: int,
                      event_clock: str) -> str:
        window = self.take_window()
        outcomes = " ".join(f"{name} {self.outcomes.get(name, 0)}"
                            for name in ("approve", "review", "decline"))
        rate = sent / elapsed_s if elapsed_s > 0 else 0.0
        return (f"[{elapsed_s:7.1f}s] sent {sent} ({rate:.1f}/s) ok {self.ok} ({outcomes}) "
                f"4xx {self.count_status(400)} 5xx {self.count_status(500)} "
                f"errors {sum(self.errors.values())} behind {behind} idle {idle} "
                f"in-flight {in_flight} "
                f"p50 {_ms(window['p50'])} p99 {_ms(window['p99'])} "
                f"labels {labels_produced} (+{labels_waiting} waiting) event clock {event_clock}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "answered": self.answered,
            "ok": self.ok,
            "outcomes": {name: self.outcomes.get(name, 0)
                         for name in ("approve", "review", "decline")},
            "degraded": self.degraded,
            "status_4xx": self.count_status(400),
            "status_5xx": self.count_status(500),
            "statuses": {str(status): n for status, n in sorted(self.statuses.items())},
            "errors": dict(sorted(self.errors.items())),
            "latency_ms": percentiles_ms(self.latencies_s),
            "example_decline": self.example_decline,
        }
