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


def test_the_lead_must_be_positive() -> None:
    computer, consumer, _ = setup()
    with pytest.raises(ValueError, match="positive"):
        EventTimeAlignment(consumer, computer, max_lead_ms=0)
