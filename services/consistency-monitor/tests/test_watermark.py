"""Topic watermarks: min over partitions, lateness, unreported and idle partitions."""

from __future__ import annotations

from rtml_consistency_monitor.watermark import TopicWatermark


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watermark(partitions: int = 2, lateness_ms: int = 0,
              idle_s: float = 30.0) -> tuple[TopicWatermark, Clock]:
    clock = Clock()
    mark = TopicWatermark("transactions", lateness_ms, idle_s, clock)
    mark.assigned = lambda: {("transactions", p) for p in range(partitions)} | {("labels", 0)}
    return mark, clock


def test_nothing_read_no_watermark() -> None:
    mark, _ = watermark()
    assert mark.value() is None


def test_an_assigned_partition_that_has_not_reported_holds_it_back() -> None:
    mark, _ = watermark()
    mark.observe(0, 5_000)
    assert mark.value() is None
    mark.observe(1, 3_000)
    assert mark.value() == 3_000


def test_minimum_over_partitions_minus_lateness_and_per_partition_maximum() -> None:
    mark, _ = watermark(lateness_ms=500)
    mark.observe(0, 5_000)
    mark.observe(1, 9_000)
    mark.observe(1, 2_000)  # out of order: the partition's newest stays 9,000
    assert mark.value() == 4_500
    mark.observe(0, 12_000)
    assert mark.value() == 8_500


def test_an_idle_partition_stops_holding_it_back() -> None:
    mark, clock = watermark(idle_s=30)
    mark.observe(0, 5_000)
    mark.observe(1, 1_000)
    clock.now += 20
    mark.observe(0, 8_000)
    assert mark.value() == 1_000
    clock.now += 15  # partition 1 silent for 35 s, partition 0 for 15 s
    assert mark.active() == {0}
    assert mark.value() == 8_000


def test_a_never_reporting_partition_is_idle_counted_from_its_assignment() -> None:
    mark, clock = watermark(idle_s=30)
    assert mark.active() == {0, 1}  # the assignment is seen now
    mark.observe(0, 5_000)
    clock.now += 31
    mark.delivered(0)
    assert mark.value() == 5_000


def test_everything_idle_means_drained_the_newest_time_counts() -> None:
    mark, clock = watermark(idle_s=30, lateness_ms=100)
    mark.observe(0, 5_000)
    mark.observe(1, 7_000)
    clock.now += 60
    assert mark.active() == set()
    assert mark.value() == 6_900


def test_without_an_assignment_hook_the_partitions_seen_count() -> None:
    mark = TopicWatermark("labels", 0, 30.0, Clock())
    mark.observe(3, 4_000)
    mark.observe(1, 6_000)
    assert mark.value() == 4_000
