"""``start_at``: events before it are consumed and counted, never measured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from rtml_common.events import Prediction
from rtml_common.kafka.consumer import Record
from rtml_common.kafka.producer import EventProducer
from rtml_drift_monitor.config import Settings
from rtml_drift_monitor.monitor import DriftMonitor

START = datetime(2018, 5, 21, tzinfo=UTC)


def prediction(offset: int, event_time: datetime) -> Record[Any]:
    value = Prediction(transaction_id=str(offset), customer_id="c", event_time=event_time,
                       model_name="m", model_version="1", score=0.5, latency_ms=0.1,
                       scored_at=event_time)
    return Record("predictions", 0, offset, None, value, (), 0)


def test_records_before_start_at_are_counted_and_left_out() -> None:
    monitor = DriftMonitor(Settings(start_at=START), producer=cast(EventProducer, None))
    records = [prediction(0, START - timedelta(seconds=1)), prediction(1, START),
               prediction(2, START + timedelta(days=1))]
    kept = monitor._measured("predictions", records)
    assert [r.offset for r in kept] == [1, 2]
    assert monitor.events == {"predictions:before_start": 1}


def test_without_start_at_everything_is_measured() -> None:
    monitor = DriftMonitor(Settings(), producer=cast(EventProducer, None))
    records = [prediction(0, START - timedelta(days=300)), prediction(1, START)]
    assert monitor._measured("predictions", records) == records
    assert monitor.events == {}
