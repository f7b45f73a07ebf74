"""EventTimeAlignment: partitions far ahead in event time wait for the slowest."""

from __future__ import annotations

import pytest

from rtml_feature_pipeline.alignment import EventTimeAlignment
from rtml_features.baseline import BASELINE
from rtml_features.stream import StreamingFeatureComputer

DAY = 86_400_000


class RecordingConsumer:
    """A stand-in that records pause/resume calls (the logic under test is pure)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, int]]]] = []

    def pause(self, partitions: list[tuple[str, int]]) -> None:
        self.calls.append(("pause", list(partitions)))

    def resume(self, partitions: list[tuple[str, int]]) -> None:
        self.calls.append(("resume", list(partitions)))


def setup() -> tuple[StreamingFeatureComputer, RecordingConsumer, EventTimeAlignment]:
    computer = StreamingFeatureComputer(BASELINE)
    consumer = RecordingConsumer()
    return computer, consumer, EventTimeAlignment(consumer, computer, max_lead_ms=DAY)


def test_a_partition_too_far_ahead_is_paused_until_the_slowest_catches_up() -> None:
    computer, consumer, alignment = setup()
    computer.source_times.update({"transactions:0": 10 * DAY, "transactions:1": 10 * DAY,
                                  "labels:0": 10 * DAY})
    alignment.after_batch()
    assert consumer.calls == []
    computer.source_times["transactions:1"] = 12 * DAY  # two days ahead
    alignment.after_batch()
    assert consumer.calls == [("pause", [("transactions", 1)])]
    computer.source_times.update({"transactions:0": 11 * DAY + 1, "labels:0": 11 * DAY + 1})
    alignment.after_batch()  # within a day again
    assert consumer.calls[-1] == ("resume", [("transactions", 1)])
    assert alignment.paused == set() and alignment.pauses == 1


def test_idle_resumes_everything_so_an_exhausted_partition_holds_nothing_back() -> None:
    computer, consumer, alignment = setup()
    computer.source_times.update({"transactions:0": 0, "transactions:1": 5 * DAY,
                                  "labels:3": 6 * DAY})
    alignment.after_batch()
    assert consumer.calls == [("pause", [("labels", 3), ("transactions", 1)])]
    alignment.on_idle()
    assert consumer.calls[-1] == ("resume", [("labels", 3), ("transactions", 1)])
    alignment.on_idle()  # nothing paused: no call
    assert len(consumer.calls) == 2


def test_silent_sources_and_a_single_source_pause_nothing() -> None:
    computer, consumer, alignment = setup()
    computer.expect_sources(["transactions:0", "transactions:1"])  # nothing read yet
    computer.source_times["transactions:0"] = 9 * DAY
    alignment.after_batch()
    assert consumer.calls == []


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_while_a_partition_is_silent_the_others_stay_near_where_the_data_starts() -> None:
    computer = StreamingFeatureComputer(BASELINE)
    consumer, clock = RecordingConsumer(), FakeClock()
    alignment = EventTimeAlignment(consumer, computer, max_lead_ms=DAY, silence_grace_s=1.0,
                                   clock=clock)
    computer.expect_sources(["transactions:0", "transactions:1"])
    computer.source_times["labels:0"] = 10 * DAY  # labels first, as the client may serve them
    alignment.after_batch()
    computer.source_times["labels:0"] = 12 * DAY  # two days past where the data starts
    alignment.after_batch()
    assert consumer.calls == [("pause", [("labels", 0)])]  # alone, but transactions are silent
    computer.source_times["transactions:0"] = 10 * DAY + 5
    alignment.after_batch()  # transactions:1 still silent: labels:0 stays paused
    assert consumer.calls[-1] == ("pause", [("labels", 0)])
    alignment.on_idle()  # nothing to read: transactions:1 gets its grace period first
    clock.now += 0.5
    alignment.on_idle()
    assert consumer.calls[-1][0] == "pause"
    clock.now += 0.6  # silent through the grace period: empty, it holds nothing back
    alignment.on_idle()
    assert consumer.calls[-1] == ("resume", [("labels", 0)])
    assert alignment.empty == {"transactions:1"}


def test_a_silent_partition_that_delivers_joins_the_usual_rule() -> None:
    computer, consumer, alignment = setup()
    computer.expect_sources(["transactions:0", "transactions:1"])
    computer.source_times["transactions:0"] = 10 * DAY
    alignment.after_batch()
    computer.source_times["transactions:0"] = 13 * DAY
    alignment.after_batch()
    assert consumer.calls == [("pause", [("transactions", 0)])]
    computer.source_times["transactions:1"] = 12 * DAY + 1  # delivers: now the slowest
    alignment.after_batch()
    assert consumer.calls[-1] == ("resume", [("transactions", 0)])
    assert alignment.floor_ms == 10 * DAY


def test_the_lead_must_be_positive() -> None:
    computer, consumer, _ = setup()
    with pytest.raises(ValueError, match="positive"):
        EventTimeAlignment(consumer, computer, max_lead_ms=0)
