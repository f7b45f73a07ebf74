"""Event-time windows: assignment to panes, sliding sums, watermark closing, late and partial."""

from __future__ import annotations

import numpy as np
import pytest

from rtml_drift_monitor.windows import Skip, WindowedHistograms, WindowKind, WindowSpec
from rtml_monitoring.reference import describe

H = 3_600_000  # one hour in ms


def histograms(sliding_panes: int = 0, lateness_ms: int = 0,
               min_events: int = 1) -> WindowedHistograms:
    """Two subjects: ``x`` with bins (-inf,1], (1,2], (2,inf); ``flag`` with bins 0 / 1."""
    x = describe(np.array([0.5, 1.5, 2.5, 0.7, 1.2, 3.0, 0.1, 1.9, 2.2]), bins=3)
    flag = describe(np.array([0.0, 1.0]), bins=10)
    assert x.edges == pytest.approx(np.quantile([0.5, 1.5, 2.5, 0.7, 1.2, 3.0, 0.1, 1.9, 2.2],
                                                [1 / 3, 2 / 3]))
    return WindowedHistograms(("x", "flag"), {"x": x, "flag": flag},
                              WindowSpec(H, sliding_panes, lateness_ms, min_events))


def rows(*values: tuple[float, float]) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def test_events_fall_in_the_pane_of_their_event_time_and_close_with_the_watermark() -> None:
    w = histograms()
    # Pane 10 (the first seen) is partial; pane 11 gets three events, the last 1 ms before its end.
    assert w.observe([10 * H + 5], rows((0.0, 1.0))) == []
    # An event at 11 H says the stream is past pane 10's end (lateness 0): pane 10 closes.
    closed = w.observe([11 * H, 11 * H + 1, 12 * H - 1],
                       rows((0.0, 0.0), (5.0, 1.0), (5.0, float("nan"))))
    assert [(c.window.kind, c.window.start_ms, c.window.end_ms, c.skip, c.events)
            for c in closed] == [(WindowKind.TUMBLING, 10 * H, 11 * H, Skip.PARTIAL, 1)]
    closed = w.observe([12 * H], rows((0.0, 0.0)))  # the watermark reaches pane 11's end
    assert [(c.window.start_ms, c.window.end_ms, c.skip, c.events) for c in closed] == [
        (11 * H, 12 * H, None, 3)]
    assert closed[0].counts[0].tolist() == [1, 0, 2]  # x: 0.0 in bin 0, both 5.0 in the top bin
    assert closed[0].counts[1].tolist() == [1, 1]  # flag 0 and 1; the NaN is missing
    assert closed[0].n == (3, 2)


def test_lateness_delays_closing_and_later_events_for_closed_panes_are_dropped() -> None:
    w = histograms(lateness_ms=H // 2)
    w.observe([10 * H], rows((0.0, 0.0)))
    assert w.observe([11 * H + H // 4], rows((0.0, 0.0))) == []  # 11.25 H - 0.5 H < 11 H
    closed = w.observe([11 * H + H // 2], rows((1.5, 0.0)))
    assert [c.window.end_ms for c in closed] == [11 * H]
    w.observe([10 * H + 7], rows((0.0, 0.0)))  # its pane is closed: late
    assert w.late == 1
    w.observe([9 * H], rows((0.0, 0.0)))  # before the first pane seen: late too
    assert w.late == 2
    assert w.observed == 3


def test_the_watermark_is_the_slowest_source() -> None:
    w = histograms()
    w.observe([10 * H], rows((0.0, 0.0)), sources="p0")
    w.observe([11 * H + 1], rows((0.0, 0.0)), sources="p1")
    assert w.observe([13 * H], rows((0.0, 0.0)), sources="p1") == []  # p0 still at 10 H
    closed = w.observe([12 * H + 1], rows((0.0, 0.0)), sources="p0")
    assert [c.window.end_ms for c in closed] == [11 * H, 12 * H]


def test_a_batch_advances_all_its_sources_before_closing() -> None:
    """One partition's rows first in a batch must not close windows the next one fills."""
    w = histograms()
    times = [10 * H, 11 * H + 1, 12 * H + 1, 10 * H + 5, 11 * H + 5, 12 * H + 5]
    closed = w.observe(times, rows(*[(0.0, 0.0)] * 6), sources=["p0"] * 3 + ["p1"] * 3)
    assert w.late == 0
    assert [(c.window.start_ms // H, c.events) for c in closed] == [(10, 2), (11, 2)]


def test_an_active_source_that_has_not_reported_holds_every_window_open() -> None:
    w = histograms()
    active = {"p0", "p1"}
    assert w.observe([10 * H, 12 * H], rows((0.0, 0.0), (0.0, 0.0)), "p0", active) == []
    assert w.watermark_ms(active) is None
    closed = w.observe([11 * H + 1], rows((0.0, 0.0)), "p1", active)  # p1 reports: 11 H
    assert [c.window.end_ms for c in closed] == [11 * H]
    # p1 goes idle (the caller drops it from the active set): p0 alone moves the watermark.
    closed = w.observe([12 * H + 1], rows((0.0, 0.0)), "p0", {"p0"})
    assert [c.window.end_ms for c in closed] == [12 * H]


def test_sliding_windows_sum_their_panes_and_skip_those_with_the_partial_pane() -> None:
    w = histograms(sliding_panes=3)
    closed = []
    for pane in range(10, 17):  # pane k gets k - 9 events with x = 0
        closed += w.observe(np.full(pane - 9, pane * H + 1), rows(*[(0.0, 0.0)] * (pane - 9)))
    sliding = [c for c in closed if c.window.kind is WindowKind.SLIDING]
    assert [(c.window.start_ms // H, c.window.end_ms // H) for c in sliding] == [
        (8, 11), (9, 12), (10, 13), (11, 14), (12, 15), (13, 16)]
    assert [c.skip for c in sliding] == [Skip.PARTIAL] * 3 + [None] * 3
    assert [c.events for c in sliding] == [1, 3, 6, 2 + 3 + 4, 3 + 4 + 5, 4 + 5 + 6]
    assert [int(c.counts[0][0]) for c in sliding[3:]] == [9, 12, 15]
    tumbling = [c for c in closed if c.window.kind is WindowKind.TUMBLING]
    assert [c.events for c in tumbling] == [1, 2, 3, 4, 5, 6]


def test_a_window_with_too_few_events_is_closed_but_not_evaluated() -> None:
    w = histograms(min_events=3)
    closed = w.observe([10 * H], rows((0.0, 0.0)))
    closed += w.observe([11 * H + 1, 11 * H + 2], rows((0.0, 0.0), (0.0, 0.0)))
    closed += w.observe([12 * H + 1, 12 * H + 2, 12 * H + 3], rows(*[(0.0, 0.0)] * 3))
    closed += w.observe([13 * H], rows((0.0, 0.0)))
    assert [c.skip for c in closed] == [Skip.PARTIAL, Skip.TOO_FEW_EVENTS, None]


def test_a_gap_in_event_time_closes_only_panes_with_data() -> None:
    w = histograms(sliding_panes=2)
    w.observe([10 * H + 1], rows((0.0, 0.0)))
    w.observe([11 * H + 1], rows((0.0, 0.0)))  # closes pane 10 and the sliding window 9..10
    closed = w.observe([1000 * H], rows((0.0, 0.0)))  # 40 days later
    windows = [(c.window.kind.value, c.window.start_ms // H, c.events) for c in closed]
    assert windows == [("tumbling", 11, 1), ("sliding", 10, 2), ("tumbling", 12, 0),
                       ("sliding", 11, 1)]


def test_unsorted_events_of_one_batch_spanning_panes() -> None:
    w = histograms()
    times = np.array([12 * H + 3, 11 * H + 2, 10 * H + 1, 11 * H + 9, 13 * H])
    closed = w.observe(times, rows((1.5, 1.0), (0.0, 0.0), (0.0, 0.0), (2.5, 1.0), (0.0, 0.0)))
    assert [(c.window.start_ms // H, c.events) for c in closed] == [(10, 1), (11, 2), (12, 1)]
    assert closed[1].counts[0].tolist() == [1, 0, 1]
