"""Histogram bucket boundaries shared by every service.

OpenTelemetry's default boundaries (0, 5, 10, ... 10000) suit milliseconds
of web latency; our durations are recorded in seconds and mostly sub-10 ms,
so with the defaults every observation lands in the first bucket and
``histogram_quantile`` is meaningless. Passing these as the advisory
boundaries keeps p50/p99 panels accurate from 0.1 ms to 10 s.
"""

from __future__ import annotations

#: Seconds: 0.1 ms .. 10 s, roughly x2-2.5 per step.
DURATION_SECONDS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
