"""ModelEventsFollower: one refresh per batch about its model, hooks, the periodic re-read."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from rtml_common.config import KafkaSettings
from rtml_common.events import ModelEvent, ModelEventKind
from rtml_common.kafka.consumer import Record
from rtml_common.kafka.model_events import MODEL_EVENTS_TOPIC, ModelEventsFollower


class Recorder(ModelEventsFollower):
    def __init__(self, interval_s: float = 3600.0) -> None:
        super().__init__("fraud", KafkaSettings(bootstrap_servers="127.0.0.1:1"), "svc",
                         interval_s)
        self.refreshes: list[str] = []
        self.seen: list[list[str]] = []
        self.refreshed = threading.Event()

    def refresh(self, why: str) -> bool:
        self.refreshes.append(why)
        self.refreshed.set()
        return True

    def on_events(self, events: list[ModelEvent]) -> None:
        self.seen.append([e.event_id for e in events])


def record(event_id: str, model: str) -> Record[Any]:
    event = ModelEvent(event_id=event_id, kind=ModelEventKind.ALIAS_SET, model_name=model,
                       version="2", alias="champion", actor="t",
                       occurred_at=datetime(2026, 1, 1, tzinfo=UTC))
    return Record(MODEL_EVENTS_TOPIC, 0, int(event_id), None, event, (), 0)


def test_a_batch_about_the_model_refreshes_once_and_others_are_ignored() -> None:
    follower = Recorder()
    follower.handle([record("1", "fraud"), record("2", "other"), record("3", "fraud")])
    follower.handle([record("4", "other")])
    assert follower.refreshes == ["model-events"]
    assert follower.seen == [["1", "3"]] and follower.events_seen == 2


def test_each_process_reads_under_a_group_of_its_own() -> None:
    a, b = Recorder(), Recorder()
    assert a.group_id.startswith("svc-models-") and a.group_id != b.group_id


def test_the_periodic_re_read_runs_until_stopped() -> None:
    follower = Recorder(interval_s=0.01)
    thread = threading.Thread(target=follower._periodic, daemon=True)
    thread.start()
    assert follower.refreshed.wait(5)
    follower._stop.set()
    thread.join(5)
    assert not thread.is_alive() and set(follower.refreshes) == {"periodic re-read"}
