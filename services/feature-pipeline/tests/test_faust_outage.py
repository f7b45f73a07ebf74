"""The Faust engine waits out Redis being unavailable: no bound, nothing dead-lettered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import redis

from rtml_common.config import KafkaSettings
from rtml_common.kafka.consumer import Record
from rtml_feature_pipeline import faust_engine
from rtml_feature_pipeline.config import Settings


class _Producer:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None,
                 headers: Any = None) -> None:
        self.sent.append((topic, key, value))

    def flush(self, timeout_s: float | None = None) -> None:
        pass


class _WorkerWithoutRedis:
    """Fails ``outage`` times as if Redis were down, then applies the batch."""

    def __init__(self, outage: int) -> None:
        self.outage = outage
        self.attempts = 0
        self.applied: list[int] = []
        self.offsets: dict[tuple[str, int], int] = {}

    def cover(self, next_offsets: dict[tuple[str, int], int]) -> None:
        self.offsets.update(next_offsets)

    def handle(self, records: list[Record[Any]]) -> None:
        self.attempts += 1
        if self.attempts <= self.outage:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379.")
        self.applied.extend(r.offset for r in records)


def test_an_outage_longer_than_the_retries_is_waited_out(tmp_path: Path) -> None:
    producer, worker = _Producer(), _WorkerWithoutRedis(outage=12)
    # Far more failures than max_retries=1 allows a bad record; tiny backoff, capped.
    kafka = KafkaSettings(max_retries=1, retry_backoff_s=0.001, dependency_backoff_max_s=0.004)
    messages = [SimpleNamespace(topic="transactions", partition=0, offset=offset, key=b"c1",
                                value=b"raw") for offset in range(3)]
    records = [Record("transactions", 0, m.offset, m.key, "ok", [], 0) for m in messages]

    async def go() -> faust_engine.FaustEngine:
        engine = faust_engine.FaustEngine(Settings(consumer_group="g"), kafka,
                                          cast(Any, worker), cast(Any, producer), str(tmp_path))
        sources = [faust_engine._SourceRecord(m, []) for m in messages]
        await engine._handle_with_retries(records, sources)
        return engine

    engine = asyncio.run(go())
    assert worker.applied == [0, 1, 2]
    assert producer.sent == []  # nothing dead-lettered
    assert (engine.stats.dependency_waits, engine.stats.retries) == (12, 0)
    assert engine.stats.handled == 3 and engine.stats.dead_lettered == 0
