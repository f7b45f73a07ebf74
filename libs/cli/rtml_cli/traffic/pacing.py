"""When each request goes out, and which event time it carries.

**Open loop.** Slot *i* is due ``i / rate`` seconds after the start, whatever
the API's latency: a slow answer never delays the next send (a closed loop
would, and would hide the very latency a load source is there to show).
Targets are absolute, so sleep overshoot never accumulates. Requests awaiting
an answer are bounded (``max_in_flight``): a slot that finds them all busy
waits for one to finish and is counted *behind schedule*, as is one the loop
itself started more than :data:`LATE_TOLERANCE_S` after its time. The rate is
never lowered to hide it; the backlog goes out as soon as room frees up.

**Event time.** The event clock runs ``speed`` times faster than wall time
and reads offsets from the start day's midnight. The API refuses event times
more than ``RTML_DECISION_MAX_FUTURE_SKEW_S`` (300 s) ahead of its clock and,
by default, accepts any past one (``RTML_DECISION_MAX_EVENT_AGE_S`` unset).
So at ``speed`` 1 the clock starts at now and stays on it; faster, it is
anchored in the past so that it reaches now exactly when the run ends (at
``--duration``, or when the data runs out): every event time sent is at or
before the wall clock, the last ones close to it, and they keep the data
set's own spacing, so the features' windows (1, 7, 30 days) see a day of
payments per ``86400 / speed`` seconds. The oldest event time is
``(speed - 1) * horizon`` before the start (:attr:`TimeMapping.oldest_age_s`),
which a run checks against the API's age limit when it is given one.

With ``--event-times data`` the event clock reads the data set's own times
instead (:func:`data_time`): a run then continues a history replayed before
it (``rtml replay`` of the days before ``--start-day``), so every customer
and terminal arrives with its past, as in production; the API accepts such
past times unless ``RTML_DECISION_MAX_EVENT_AGE_S`` is set.

The clock and the sleep are injected, so the schedule is tested on a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, TypeVar

US_PER_SECOND = 1_000_000

#: A send starting later than this after its slot counts as behind schedule.
LATE_TOLERANCE_S = 0.1
#: The event clock stays this far behind the wall clock at the end of a run (the API
#: compares with its own clock; a second covers a small difference between the two).
SAFETY_S = 1.0
#: While catching up (no wait before a slot), yield to the other tasks every this many slots.
YIELD_EVERY = 32

T = TypeVar("T")


class Exhausted:
    """The plan has nothing more to send (the end of the data)."""


#: Returned by a slot plan when the data set is used up: the loop ends.
EXHAUSTED: Final = Exhausted()


@dataclass(frozen=True)
class TimeMapping:
    """Maps data-set offsets (from the start day's midnight) onto a run's wall clock."""

    #: Event time of offset 0.
    anchor: datetime
    speed: float
    #: Wall seconds the run may last: ``--duration`` or the data's span at this speed.
    horizon_s: float

    def event_time(self, offset_us: int) -> datetime:
        return self.anchor + timedelta(microseconds=int(offset_us))

    def position_us(self, elapsed_s: float) -> int:
        """The event clock ``elapsed_s`` wall seconds after the start, as an offset."""
        return int(self.speed * elapsed_s * US_PER_SECOND)

    def wall_s(self, offset_us: int) -> float:
        """Wall seconds after the start when the event clock reads ``offset_us``."""
        return offset_us / US_PER_SECOND / self.speed

    @property
    def oldest_age_s(self) -> float:
        """How far behind the wall clock the first event time is."""
        return max(0.0, self.speed - 1.0) * self.horizon_s + SAFETY_S


def _horizon_s(speed: float, span_us: int, duration_s: float | None) -> float:
    """Wall seconds a run may last: the data's span at ``speed``, or ``duration_s`` if less."""
    if speed <= 0:
        raise ValueError("speed must be > 0")
    horizon = span_us / US_PER_SECOND / speed
    return horizon if duration_s is None else min(horizon, duration_s)


def map_time(now: datetime, speed: float, span_us: int,
             duration_s: float | None) -> TimeMapping:
    """The mapping of a run starting at ``now`` (module docstring)."""
    horizon = _horizon_s(speed, span_us, duration_s)
    lead = max(0.0, speed - 1.0) * horizon
    return TimeMapping(anchor=now - timedelta(seconds=lead + SAFETY_S), speed=speed,
                       horizon_s=horizon)


def data_time(start: datetime, speed: float, span_us: int,
              duration_s: float | None) -> TimeMapping:
    """The mapping that keeps the data set's own event times (``start``: the start day's
    midnight in them), paced at ``speed``."""
    return TimeMapping(anchor=start, speed=speed,
                       horizon_s=_horizon_s(speed, span_us, duration_s))


@dataclass
class LoopCounts:
    """What the open loop did (read by the progress line while it runs)."""

    slots: int = 0
    sent: int = 0
    behind: int = 0
    #: Largest delay of a send after its slot, seconds.
    max_lag_s: float = 0.0
    #: Slots that waited for room past the end of the run (or the stop), so were not sent.
    unsent: int = 0


async def run_open_loop(
    *,
    rate: float,
    max_in_flight: int,
    plan: Callable[[int], T | Exhausted | None],
    send: Callable[[T], Awaitable[None]],
    stop: asyncio.Event,
    start: float,
    end_s: float | None = None,
    counts: LoopCounts | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> set[asyncio.Task[None]]:
    """Send ``plan(i)`` at ``start + i / rate`` until ``stop``, ``end_s`` or :data:`EXHAUSTED`.

    ``plan(i)`` returns what slot *i* sends, None for an idle slot, or
    :data:`EXHAUSTED`. Returns the sends still in flight (the caller drains them).
    """
    counts = counts if counts is not None else LoopCounts()
    room = asyncio.Semaphore(max_in_flight)
    in_flight: set[asyncio.Task[None]] = set()

    async def one(item: T) -> None:
        try:
            await send(item)
        finally:
            room.release()

    i = 0
    while not stop.is_set():
        due = i / rate
        if end_s is not None and due >= end_s:
            break
        wait = start + due - clock()
        if wait > 0:
            await sleep(wait)
            if stop.is_set():
                break
        elif i % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # catching up: let answers, labels and progress run too
        # Room first, then the plan: a slot the end overtakes while it waits for room
        # takes no payment (the summary would otherwise name one never sent).
        waited = room.locked()
        await room.acquire()
        if waited and (stop.is_set() or (end_s is not None and clock() - start >= end_s)):
            room.release()  # the run ended while this slot waited for room: not sent
            counts.unsent += 1
            break
        item = plan(i)
        i += 1
        counts.slots = i
        if isinstance(item, Exhausted) or item is None:
            room.release()
            if item is None:
                continue
            break
        lag = clock() - (start + due)
        counts.max_lag_s = max(counts.max_lag_s, lag)
        if waited or lag > LATE_TOLERANCE_S:
            counts.behind += 1
        counts.sent += 1
        task = asyncio.get_running_loop().create_task(one(item))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    return in_flight


def stoppable_sleep(stop: asyncio.Event) -> Callable[[float], Awaitable[None]]:
    """A sleep that ends early when ``stop`` is set (long waits at slow rates or speed 1)."""

    async def sleep(seconds: float) -> None:
        if seconds < 0.05:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    return sleep
