"""Label delays and the label schedule, tied to the event-time mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rtml_cli.traffic.labels import DATASET_LABEL_DELAY, LabelSchedule, label_delay
from rtml_cli.traffic.pacing import US_PER_SECOND, map_time
from rtml_common.events import Label

NOW = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)


def _label(tx: str, at: datetime = NOW) -> Label:
    return Label(transaction_id=tx, customer_id="c", transaction_time=at, labeled_at=at,
                 is_fraud=False)


def test_the_data_sets_delay_is_scaled_by_the_speed() -> None:
    assert timedelta(days=7) == DATASET_LABEL_DELAY
    delay = label_delay(3600.0)
    assert delay.event == timedelta(days=7)
    assert delay.wall_s == pytest.approx(168.0)  # 7 event-days at x3600: 2.8 minutes
    assert label_delay(1.0).wall_s == pytest.approx(7 * 86_400)


def test_an_override_sets_the_wall_delay_and_keeps_the_clocks_agreeing() -> None:
    delay = label_delay(250.0, override_wall_s=2.0)
    assert delay.wall_s == 2.0 and delay.event == timedelta(seconds=500)
    assert label_delay(250.0, override_wall_s=0.0).event == timedelta(0)


@pytest.mark.parametrize(("speed", "override"), [(3600.0, None), (302_400.0, None),
                                                 (50.0, 3.0), (1.0, 0.5)])
def test_a_label_is_due_when_the_event_clock_reaches_its_labeled_at(
        speed: float, override: float | None) -> None:
    mapping = map_time(NOW, speed, 60 * 86_400 * US_PER_SECOND, duration_s=None)
    delay = label_delay(speed, override)
    for offset_us in (0, 123_456_789, 20 * 86_400 * US_PER_SECOND + 1):
        sent_at = mapping.event_time(offset_us)
        labeled_at = sent_at + delay.event
        due_s = mapping.wall_s(offset_us) + delay.wall_s
        clock_then = mapping.event_time(mapping.position_us(due_s))
        assert abs((clock_then - labeled_at).total_seconds()) < 1e-3


def test_schedule_releases_labels_in_due_order() -> None:
    schedule = LabelSchedule()
    for name, due in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("b2", 2.0), ("d", 10.0)]:
        schedule.add(_label(name), due)
    assert schedule.pop_due(0.5) == []
    assert [x.transaction_id for x in schedule.pop_due(2.0)] == ["a", "b", "b2"]
    assert len(schedule) == 2
    assert [x.transaction_id for x in schedule.pop_due(3.5)] == ["c"]
    # At the stop: what is not due stays pending, or is drained for a flush.
    assert len(schedule) == 1
    assert [x.transaction_id for x in schedule.drain()] == ["d"]
    assert len(schedule) == 0
