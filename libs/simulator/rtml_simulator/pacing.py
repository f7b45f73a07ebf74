"""Rate control for the replay: how long to wait before sending event *i*.

Three modes, one rule: event *i* (with event time *t_i*) must not be sent
before ``wall_start + offset(i, t_i)``, where ``offset`` is

* ``MAX``: 0 — as fast as the producer takes them;
* ``RATE`` (events/s): ``i / rate`` — a fixed throughput;
* ``SPEEDUP`` (factor): ``(t_i - t_start) / speedup`` — event time runs
  ``speedup`` times faster than wall time (3600: one event-hour a second),
  so bursts and quiet nights keep their shape.

Targets are absolute (computed from the start), so sleep overshoot never
accumulates into drift. The clock and sleep functions are injectable, which
makes the pacing testable without waiting.

>>> now = [0.0]
>>> def fake_sleep(seconds: float) -> None:
...     now[0] += seconds
>>> pacer = Pacer(Pace.rate(10), event_time_start=0.0, clock=lambda: now[0], sleep=fake_sleep)
>>> [round(pacer.wait(i, 0.0), 3) for i in range(3)]
[0.0, 0.1, 0.1]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class PaceMode(StrEnum):
    MAX = "max"
    RATE = "rate"
    SPEEDUP = "speedup"


@dataclass(frozen=True)
class Pace:
    """A rate-control setting: mode and its value (events/s or speedup factor)."""

    mode: PaceMode = PaceMode.MAX
    value: float = 0.0

    def __post_init__(self) -> None:
        if self.mode is not PaceMode.MAX and not self.value > 0:
            raise ValueError(f"{self.mode.value} pace needs a value > 0, got {self.value}")

    @classmethod
    def max_speed(cls) -> Pace:
        return cls(PaceMode.MAX)

    @classmethod
    def rate(cls, events_per_second: float) -> Pace:
        return cls(PaceMode.RATE, events_per_second)

    @classmethod
    def speedup(cls, factor: float) -> Pace:
        return cls(PaceMode.SPEEDUP, factor)

    def describe(self) -> str:
        if self.mode is PaceMode.RATE:
            return f"{self.value:g} events/s"
        if self.mode is PaceMode.SPEEDUP:
            return f"event time x{self.value:g}"
        return "as fast as possible"


class Pacer:
    """Blocks until each event's send time; see the module docstring."""

    def __init__(
        self,
        pace: Pace,
        event_time_start: float,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.pace = pace
        self.event_time_start = event_time_start
        self._clock = clock
        self._sleep = sleep
        self.wall_start = clock()

    def offset(self, index: int, event_time: float) -> float:
        """Seconds after the start at which event ``index`` may be sent."""
        if self.pace.mode is PaceMode.RATE:
            return index / self.pace.value
        if self.pace.mode is PaceMode.SPEEDUP:
            return max(0.0, event_time - self.event_time_start) / self.pace.value
        return 0.0

    def wait(self, index: int, event_time: float) -> float:
        """Sleep until event ``index`` is due; returns the seconds slept."""
        if self.pace.mode is PaceMode.MAX:
            return 0.0
        delay = self.wall_start + self.offset(index, event_time) - self._clock()
        if delay > 0:
            self._sleep(delay)
            return delay
        return 0.0
