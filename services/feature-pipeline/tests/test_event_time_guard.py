"""The event-time guard's rule, on a fake wall clock (no server: see
``test_worker_quarantine.py`` for the worker against a real broker and Redis)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rtml_feature_pipeline.event_time_guard import (
    AHEAD_OF_PARTITION,
    AHEAD_OF_WALL_CLOCK,
    FAR_FROM_STREAM,
    LABEL_BEFORE_TRANSACTION,
    TOO_OLD,
    EventTimeBounds,
    EventTimeGuard,
)

DAY = 86_400_000
HOUR = 3_600_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


WALL = ms("2026-12-07T06:00:00")
REPLAY = ms("2018-04-01T00:00:00")  # a replay of 2018 data, 8 years behind the wall clock
YEAR_9999 = ms("9999-12-31T23:59:59")
YEAR_1 = ms("0001-01-01T00:00:00")
P0, P1, L0 = "transactions:0", "transactions:1", "labels:0"


class FakeClock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> float:
        return self.now_ms / 1000

    def advance(self, ms: int) -> None:
        self.now_ms += ms


def guard_at(now_ms: int = WALL, **bounds: int) -> tuple[EventTimeGuard, FakeClock]:
    clock = FakeClock(now_ms)
    return EventTimeGuard(EventTimeBounds(**bounds), {}, clock), clock


def accept(guard: EventTimeGuard, source: str, time_ms: int) -> None:
    assert guard.check(source, time_ms) is None, guard.check(source, time_ms)
    guard.advanced(source, time_ms)


def test_the_future_of_the_wall_clock_is_refused_whatever_the_partition() -> None:
    guard, _ = guard_at()
    for source in (P0, P1):  # a first event, then one with a time of its own
        refusal = guard.check(source, YEAR_9999)
        assert refusal is not None and refusal.kind == AHEAD_OF_WALL_CLOCK
        assert "9999-12-31T23:59:59" in refusal.reason
        assert "ahead of the wall clock" in refusal.reason
        accept(guard, source, WALL - 1000)
    assert guard.check(P0, WALL + 600_000) is None  # the clock skew is allowed
    refusal = guard.check(P0, WALL + 600_001)
    assert refusal is not None and refusal.kind == AHEAD_OF_WALL_CLOCK


def test_a_fast_replay_is_held_to_its_partitions_own_time() -> None:
    guard, clock = guard_at()
    t = REPLAY
    for _ in range(1000):  # a minute of event time per millisecond of wall-clock time
        accept(guard, P0, t)
        t += 60_000
        clock.advance(1)
        guard.start_batch()  # one event a batch here
    # An event today (8 years ahead of the replay) passes the wall-clock bound: not this one.
    refusal = guard.check(P0, WALL - HOUR)
    assert refusal is not None and refusal.kind == AHEAD_OF_PARTITION
    assert P0 in refusal.reason and "2018-04-01" in refusal.reason
    last = t - 60_000
    # A day-long gap in the data passes (+1 ms: the wall clock moved on since ``last``).
    assert guard.check(P0, last + DAY + 1) is None
    assert guard.check(P0, last + DAY + 2) is not None
    # Refused events move nothing: the bound is the same after them.
    assert guard.leads[P0] == last - clock.now_ms + 1


def test_a_quiet_partitions_bound_grows_with_real_elapsed_time() -> None:
    guard, clock = guard_at()
    accept(guard, P0, REPLAY)
    assert guard.check(P0, REPLAY + 3 * DAY) is not None
    clock.advance(2 * DAY)  # two days without events (or with the service down)
    guard.start_batch()
    assert guard.check(P0, REPLAY + 3 * DAY) is None
    # A live stream after a quiet night: events at the wall clock pass.
    live, live_clock = guard_at()
    accept(live, P0, WALL - 50)
    live_clock.advance(12 * HOUR)
    live.start_batch()
    assert live.check(P0, live_clock.now_ms) is None


def test_the_bound_is_per_partition_not_stream_wide() -> None:
    guard, _ = guard_at()
    accept(guard, P0, REPLAY)
    accept(guard, L0, REPLAY + 28 * DAY)  # labels read weeks ahead at start-up: fine
    accept(guard, L0, REPLAY + 28 * DAY + HOUR)
    # ...but P0 is not allowed to jump to where labels:0 is.
    assert guard.check(P0, REPLAY + 28 * DAY) is not None
    assert guard.check(P0, REPLAY + HOUR) is None


def test_a_late_event_does_not_move_the_bound() -> None:
    guard, _ = guard_at()
    accept(guard, P0, REPLAY)
    lead = guard.leads[P0]
    guard.advanced(P0, REPLAY - 3 * DAY)  # applied behind its partition's time
    assert guard.leads[P0] == lead


def test_a_partitions_first_event_is_held_near_the_streams_time_both_ways() -> None:
    guard, _ = guard_at()
    accept(guard, P0, REPLAY)
    for far in (YEAR_1, ms("1970-01-01T00:00:00"), ms("2025-06-01T00:00:00")):
        refusal = guard.check(P1, far)
        assert refusal is not None and refusal.kind == FAR_FROM_STREAM, far
        assert P1 in refusal.reason
    assert "behind" in guard.check(P1, YEAR_1).reason  # type: ignore[union-attr]
    accept(guard, P1, REPLAY - 200 * DAY)  # a partition read far behind: within a year
    accept(guard, L0, REPLAY + 40 * DAY)


def test_the_streams_first_event_only_has_to_be_younger_than_the_age_limit() -> None:
    guard, _ = guard_at()
    refusal = guard.check(P0, YEAR_1)
    assert refusal is not None and refusal.kind == TOO_OLD and "0001-01-01" in refusal.reason
    assert guard.check(P0, ms("1970-01-01T00:00:00")) is not None
    assert guard.check(P0, REPLAY) is None


def test_labels_are_checked_at_labeled_at_and_after_their_transaction() -> None:
    guard, _ = guard_at()
    assert guard.check_label(L0, REPLAY + 7 * DAY, REPLAY) is None
    guard.advanced(L0, REPLAY + 7 * DAY)
    refusal = guard.check_label(L0, YEAR_9999, REPLAY)
    assert refusal is not None and refusal.kind == AHEAD_OF_WALL_CLOCK
    refusal = guard.check_label(L0, REPLAY + 7 * DAY, YEAR_9999)
    assert refusal is not None and refusal.kind == LABEL_BEFORE_TRANSACTION
    assert "transaction_time 9999-12-31" in refusal.reason
    assert guard.check_label(L0, REPLAY + 7 * DAY, REPLAY + 7 * DAY) is None  # no delay: fine


def test_zero_disables_a_bound() -> None:
    guard, _ = guard_at(max_ahead_ms=0, max_clock_skew_ms=0, max_partition_skew_ms=0,
                        max_event_age_ms=0)
    accept(guard, P0, YEAR_1)
    accept(guard, P0, YEAR_9999)
    accept(guard, P1, REPLAY)
    assert guard.check_label(L0, REPLAY, YEAR_9999) is None
    with pytest.raises(ValueError, match=">= 0"):
        EventTimeBounds(max_ahead_ms=-1)


def test_reasons_name_times_out_of_datetimes_range() -> None:
    guard, _ = guard_at()
    refusal = guard.check(P0, 2**62)
    assert refusal is not None and f"{2**62} ms since 1970" in refusal.reason
