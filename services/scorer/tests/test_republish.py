"""The publication ledger's rules, step by step, against a real broker.

What ``test_crash_duplicates.py`` shows end to end (a killed scorer publishes
nothing twice) rests on these: positions are stored only once a commit covers
them and never while a partition's replay runs; an assignment finds what was
published after them; each found key is suppressed once; a burst's positions
are stored while idle.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from rtml_common.config import KafkaSettings
from rtml_common.kafka.admin import ensure_topics
from rtml_common.kafka.producer import EventProducer
from rtml_scorer.outputs import PREDICTIONS_TOPIC, SHADOW_TOPIC
from rtml_scorer.republish import PublicationLedger
from rtml_scorer.scorer import FEATURES_TOPIC

pytestmark = pytest.mark.integration


class Commits:
    """Stands for the consumer loop's successful-commit count."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> int:
        return self.count


def publish(kafka: KafkaSettings, transaction_ids: list[str], version: str = "1") -> None:
    with EventProducer(kafka) as producer:
        for tx in transaction_ids:
            producer.send_raw(PREDICTIONS_TOPIC, b"c1", orjson.dumps(
                {"transaction_id": tx, "model_name": "m", "model_version": version}))


def ledger_for(kafka: KafkaSettings, commits: Commits, interval_s: float = 0.0
               ) -> PublicationLedger:
    return PublicationLedger(kafka, "g-ledger", FEATURES_TOPIC,
                             [PREDICTIONS_TOPIC, SHADOW_TOPIC], interval_s, commits)


def test_the_ledger_finds_suppresses_and_advances_only_when_safe(
        fresh_kafka_broker: Any) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, [FEATURES_TOPIC, PREDICTIONS_TOPIC, SHADOW_TOPIC],
                  replication_factor=1)
    kafka = KafkaSettings(bootstrap_servers=bootstrap, idempotent_producer=False)
    commits = Commits()

    # A group's first assignment: no ledger yet, one is started at the current ends.
    publish(kafka, ["old-1", "old-2"])  # before this group ever ran: not its business
    first = ledger_for(kafka, commits)
    first.prepare([0])
    assert first.load(0) == first.ends()
    assert first.found == set() and first.reach == {}

    # Published after the stored positions, then "crash": a new process's assignment
    # finds exactly those, whatever their partition.
    publish(kafka, ["tx-1", "tx-2", "tx-3"])
    inputs = Producer({"bootstrap.servers": bootstrap})
    for _ in range(3):  # features partition 0: 3 records, none committed
        inputs.produce(FEATURES_TOPIC, b"{}", partition=0)
    inputs.flush(10)
    second = ledger_for(kafka, commits, interval_s=0.01)
    second.prepare([0])
    assert {key[1] for key in second.found} == {"tx-1", "tx-2", "tx-3"}
    assert second.reach == {0: 3}  # replaying until the input end seen at assignment

    # Each found key is suppressed once, per topic and version.
    skip = second.already_published(PREDICTIONS_TOPIC, ["tx-2", "tx-9", "tx-2"], "m", "1")
    assert skip == {0}
    assert second.already_published(PREDICTIONS_TOPIC, ["tx-1"], "m", "2") == set()
    assert second.already_published(SHADOW_TOPIC, ["tx-1"], "m", "1") == set()
    assert second.suppressed == 1

    # Positions measured now wait for a commit, and for the replay to pass its input end.
    stored = second.load(0)
    second.tick({0})  # measures a candidate
    publish(kafka, ["tx-4"])
    second.tick({0})
    assert second.load(0) == stored  # no commit since the measurement
    commits.count += 1
    second.after_batch({(FEATURES_TOPIC, 0): 1}, {0})
    assert second.load(0) == stored  # committed, but partition 0 is still replaying
    second.after_batch({(FEATURES_TOPIC, 0): second.reach[0]}, {0})  # replay passed the end
    assert second.reach == {} and second.found == set()  # leftover keys dropped
    second.tick({0})  # the measurement taken after tx-4 waits for a commit ...
    commits.count += 1
    second.tick({0})  # ... and is stored once one covers it (from the idle hook too)
    advanced = second.load(0)
    assert advanced is not None and stored is not None
    assert sum(advanced.values()) == sum(stored.values()) + 4  # tx-1..tx-4 are behind it

    # A later assignment reads only what came after the advanced positions.
    third = ledger_for(kafka, commits)
    third.prepare([0])
    assert third.found == set()
