"""The open-loop schedule and the event-time mapping, on a virtual clock (no real waiting)."""

from __future__ import annotations

import asyncio
import heapq
import random
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rtml_cli.traffic.pacing import (
    EXHAUSTED,
    LATE_TOLERANCE_S,
    SAFETY_S,
    US_PER_SECOND,
    Exhausted,
    LoopCounts,
    map_time,
    run_open_loop,
)

NOW = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
DAY_US = 86_400 * US_PER_SECOND


class VirtualTime:
    """A clock that jumps to the next sleeper's wake-up once every task is waiting.

    Runnable tasks get many loop turns before the clock moves, so what the code
    under test does "at" a virtual instant all happens before the next one.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), self._seq, future))
        self._seq += 1
        await future

    def run(self, main: Awaitable[Any]) -> Any:
        async def drive() -> Any:
            task = asyncio.ensure_future(main)
            while True:
                for _ in range(50):
                    await asyncio.sleep(0)
                if task.done():
                    return task.result()
                assert self._sleepers, "deadlock: every task waits on something but the clock"
                wake, _, future = heapq.heappop(self._sleepers)
                self.now = max(self.now, wake)
                future.set_result(None)

        return asyncio.run(drive())


def _open_loop(vt: VirtualTime, *, rate: float, slots: int, latency: Any, max_in_flight: int,
               idle: Any = lambda i: False, stop_at: float | None = None,
               end_s: float | None = None) -> tuple[list[tuple[int, float]], LoopCounts, int]:
    """Run the loop; returns (slot, virtual start time) per send, the counts, peak in flight."""
    started: list[tuple[int, float]] = []
    counts = LoopCounts()
    in_flight = [0, 0]

    def plan(i: int) -> int | Exhausted | None:
        if i >= slots:
            return EXHAUSTED
        return None if idle(i) else i

    async def send(i: int) -> None:
        started.append((i, vt.clock()))
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        await vt.sleep(latency(i))
        in_flight[0] -= 1

    async def main() -> None:
        stop = asyncio.Event()
        if stop_at is not None:
            async def stopper() -> None:
                await vt.sleep(stop_at)
                stop.set()
            stopping = asyncio.ensure_future(stopper())
        pending = await run_open_loop(rate=rate, max_in_flight=max_in_flight, plan=plan,
                                      send=send, stop=stop, start=vt.clock(), end_s=end_s,
                                      counts=counts, clock=vt.clock, sleep=vt.sleep)
        await asyncio.gather(*pending)
        if stop_at is not None:
            stopping.cancel()

    vt.run(main())
    return started, counts, in_flight[1]


def test_sends_follow_the_rate_whatever_the_latency() -> None:
    rng = random.Random(3)
    latencies = [rng.choice([0.001, 0.5, 3.0, 12.0]) for _ in range(200)]
    vt = VirtualTime()
    started, counts, peak = _open_loop(vt, rate=20, slots=200, latency=lambda i: latencies[i],
                                       max_in_flight=256)
    assert [i for i, _ in started] == list(range(200))
    assert [t for _, t in started] == pytest.approx([i / 20 for i in range(200)], abs=1e-9)
    assert counts.sent == 200 and counts.behind == 0
    assert peak > 50  # slow answers piled up in flight instead of slowing the sends


def test_a_full_in_flight_bound_is_reported_behind_schedule_not_hidden() -> None:
    vt = VirtualTime()
    started, counts, peak = _open_loop(vt, rate=10, slots=40, latency=lambda i: 1.0,
                                       max_in_flight=5)
    assert peak == 5
    assert counts.sent == 40  # nothing dropped
    late = [(i, t) for i, t in started if t > i / 10 + 1e-9]
    assert all(t >= i / 10 - 1e-9 for i, t in started)  # never early
    assert late and counts.behind == len(late)
    # Slot 5 (due 0.5 s) waits for the first answer (1.0 s); the schedule is not shifted:
    # once room frees up, the backlog goes out at once rather than 0.1 s apart.
    assert dict(started)[5] == pytest.approx(1.0)
    assert counts.max_lag_s > LATE_TOLERANCE_S


def test_idle_slots_keep_the_schedule() -> None:
    vt = VirtualTime()
    started, counts, _ = _open_loop(vt, rate=4, slots=12, latency=lambda i: 0.01,
                                    max_in_flight=8, idle=lambda i: i % 3 != 0)
    assert started == [(i, pytest.approx(i / 4)) for i in (0, 3, 6, 9)]
    assert counts.slots == 13 and counts.sent == 4  # 12 slots, then the exhausted one


def test_stop_and_end_end_the_loop() -> None:
    vt = VirtualTime()
    started, _, _ = _open_loop(vt, rate=10, slots=1000, latency=lambda i: 0.2,
                               max_in_flight=8, stop_at=1.05)
    assert [i for i, _ in started] == list(range(11))  # 0.0 .. 1.0 s
    vt = VirtualTime()
    started, _, _ = _open_loop(vt, rate=10, slots=1000, latency=lambda i: 0.2,
                               max_in_flight=8, end_s=2.0)
    assert [i for i, _ in started] == list(range(20))  # due times in [0, 2)


def test_real_time_maps_data_offsets_onto_now() -> None:
    mapping = map_time(NOW, speed=1.0, span_us=30 * DAY_US, duration_s=None)
    assert mapping.anchor == NOW - timedelta(seconds=SAFETY_S)
    assert mapping.horizon_s == 30 * 86_400
    for elapsed in (0.0, 1.5, 3600.0):
        event = mapping.event_time(mapping.position_us(elapsed))
        assert event == NOW + timedelta(seconds=elapsed - SAFETY_S)


@pytest.mark.parametrize(("speed", "span_days", "duration_s"),
                         [(3600.0, 183, 600.0), (3600.0, 2, None), (86_400.0, 30, 1e9),
                          (0.5, 10, 60.0), (7.0, 1, 30.0)])
def test_event_times_never_run_ahead_of_the_wall_clock(speed: float, span_days: int,
                                                       duration_s: float | None) -> None:
    span = span_days * DAY_US
    mapping = map_time(NOW, speed, span, duration_s)
    horizon = min(span / US_PER_SECOND / speed, duration_s or float("inf"))
    assert mapping.horizon_s == pytest.approx(horizon)
    steps = 1000
    for k in range(steps + 1):
        elapsed = horizon * k / steps
        wall = NOW + timedelta(seconds=elapsed)
        event = mapping.event_time(mapping.position_us(elapsed))
        assert event <= wall - timedelta(seconds=SAFETY_S) + timedelta(microseconds=1)
    # ... and the last ones reach it: the clock ends on now (speed >= 1).
    end = mapping.event_time(mapping.position_us(horizon))
    expected_end = NOW + timedelta(seconds=horizon * min(speed, 1.0) - SAFETY_S)
    assert abs((end - expected_end).total_seconds()) < 1e-3
    assert mapping.oldest_age_s == pytest.approx(max(0.0, speed - 1) * horizon + SAFETY_S)


def test_event_clock_keeps_the_data_spacing_and_runs_speed_times_faster() -> None:
    mapping = map_time(NOW, 3600.0, 100 * DAY_US, duration_s=600.0)
    a, b = 5 * DAY_US + 17, 6 * DAY_US + 4_000_017
    assert mapping.event_time(b) - mapping.event_time(a) == timedelta(microseconds=b - a)
    assert mapping.position_us(10.0) == 36_000 * US_PER_SECOND  # 10 s of wall: 10 event-hours
    assert mapping.wall_s(mapping.position_us(123.25)) == pytest.approx(123.25)
    assert mapping.anchor == NOW - timedelta(seconds=3599 * 600 + SAFETY_S)


def test_speed_must_be_positive() -> None:
    with pytest.raises(ValueError, match="speed"):
        map_time(NOW, 0.0, DAY_US, None)


def test_the_end_of_the_run_is_kept_even_when_behind() -> None:
    vt = VirtualTime()
    started, counts, _ = _open_loop(vt, rate=10, slots=1000, latency=lambda i: 1.0,
                                    max_in_flight=5, end_s=2.0)
    # 20 slots were due before 2.0 s; the bound let 5 start per second of latency, and the
    # slot waiting for room when the end came was not sent, nor any after it.
    assert started and all(t < 2.0 for _, t in started)
    assert counts.sent == len(started) == 10
    assert counts.unsent == 1 and counts.behind == 5


def test_data_times_keep_the_data_sets_own_clock() -> None:
    from rtml_cli.traffic.pacing import data_time

    start = datetime(2018, 4, 15, tzinfo=UTC)
    mapping = data_time(start, speed=3600.0, span_us=2 * 86_400 * 1_000_000, duration_s=30.0)
    assert mapping.horizon_s == 30.0
    assert mapping.event_time(23_000_000) == start + timedelta(seconds=23)
    # Paced as the mapped clock is: an event-hour per wall second at 3600.
    assert mapping.wall_s(3600 * 1_000_000) == 1.0
    whole = data_time(start, speed=3600.0, span_us=2 * 86_400 * 1_000_000, duration_s=None)
    assert whole.horizon_s == 48.0
