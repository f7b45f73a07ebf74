"""A batch whose Redis write fails (Redis unavailable) delivers the same outputs when retried.

fault-findings F1: the consumer loop now waits out a Redis outage and retries
the batch, but the worker had applied it to its computer before the write.
Applying it again is not the same batch: its older transactions are late
against the watermark its newer ones moved, a label revises only once. So the
retry must deliver what the first attempt computed — the online-store values
and the vectors — and nothing else (no late record, no vector twice).
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_common.dependency import is_outage
from rtml_common.events import FeatureVector, Label, Transaction
from rtml_common.kafka.consumer import Record
from rtml_common.kafka.producer import EventProducer
from rtml_common.serde import encode, headers_for
from rtml_common.topics import spec_for_event
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.inputs import decode_label_input, decode_transaction_input
from rtml_feature_pipeline.kafka_engine import build_worker
from rtml_feature_pipeline.parity import redis_entity_state
from rtml_feature_pipeline.worker import FeatureWorker
from rtml_localstack.testing import consume

pytestmark = pytest.mark.integration

TRANSACTIONS = spec_for_event(Transaction).name
LABELS = spec_for_event(Label).name


def batch() -> list[Record[Any]]:
    """Two transactions 5 minutes apart (lateness 60 s: applied again, the first is late
    against the watermark the second moved) and a fraud label of the first."""
    headers = headers_for(Transaction)
    early = Transaction(transaction_id="outage-1", customer_id="c1", terminal_id="t1",
                        amount=12.5, event_time="2018-04-01T14:00:00Z")
    later = Transaction(transaction_id="outage-2", customer_id="c1", terminal_id="t2",
                        amount=40.0, event_time="2018-04-01T14:05:00Z")
    label = Label(transaction_id="outage-1", customer_id="c1", transaction_time=early.event_time,
                  labeled_at="2018-04-01T14:06:00Z", is_fraud=True)
    return [
        Record(TRANSACTIONS, 0, 0, b"c1", decode_transaction_input(encode(early), headers),
               headers, 1),
        Record(TRANSACTIONS, 0, 1, b"c1", decode_transaction_input(encode(later), headers),
               headers, 2),
        Record(LABELS, 0, 0, b"c1", decode_label_input(encode(label), headers_for(Label)),
               headers_for(Label), 3),
    ]


def worker_on(kafka: KafkaSettings, url: str, group: str) -> FeatureWorker:
    worker = build_worker(Settings(allowed_lateness_s=60, consumer_group=group), kafka,
                          RedisSettings(url=url), EventProducer(kafka))
    worker.checkpoint_interval_s = 0  # a checkpoint after every batch (Redis again)
    worker.published = None  # this test reads the features topic itself
    worker.computer.expect_sources([f"{TRANSACTIONS}:0"])
    return worker


def test_a_batch_retried_after_a_redis_outage_writes_and_publishes_what_it_computed(
        fresh_kafka_broker: Any, fresh_redis_server: Any) -> None:
    kafka = KafkaSettings(bootstrap_servers=fresh_kafka_broker.bootstrap_servers)
    worker = worker_on(kafka, fresh_redis_server.url, "outage-unit")

    fresh_redis_server.stop()
    with pytest.raises(Exception) as raised:
        worker.handle(batch())
    assert is_outage(raised.value), raised.value  # the loop waits for it, never dead-letters
    assert worker.vectors_published == 0
    fresh_redis_server.start()  # back, empty
    worker.handle(batch())  # the loop's retry: the same records
    worker.producer.flush()

    assert (worker.late_events, worker.quarantined) == (0, 0)
    assert worker.events_applied == 3  # applied once
    vectors = [FeatureVector.model_validate_json(r.value or b"")
               for r in consume(fresh_kafka_broker.bootstrap_servers,
                                spec_for_event(FeatureVector).name, worker.vectors_published)]
    # Each transaction's vector once (applied again, the first one would have gone late).
    assert sorted((v.transaction_id, v.revision) for v in vectors) == [
        ("outage-1", 0), ("outage-2", 0)]
    assert worker.checkpoints is not None and worker.checkpoints.load() is not None

    # The online store holds what an uninterrupted worker writes for the same batch.
    reference = worker_on(kafka, fresh_redis_server.url.rsplit("/", 1)[0] + "/2", "reference")
    reference.handle(batch())
    assert reference.vectors_published == 2
    after_outage = redis_entity_state(redis.Redis.from_url(fresh_redis_server.url))
    assert after_outage and after_outage == redis_entity_state(
        redis.Redis.from_url(fresh_redis_server.url.rsplit("/", 1)[0] + "/2"))


def test_entities_no_later_record_touches_are_rewritten_when_redis_returns_empty(
        fresh_kafka_broker: Any, fresh_redis_server: Any) -> None:
    kafka = KafkaSettings(bootstrap_servers=fresh_kafka_broker.bootstrap_servers)
    worker = worker_on(kafka, fresh_redis_server.url, "resync-unit")
    worker.handle(batch())
    client = redis.Redis.from_url(fresh_redis_server.url)
    before = redis_entity_state(client)
    assert len(before) == 3  # c1, t1, t2: an event log each (the default prefix layout)

    fresh_redis_server.stop()  # between batches: no write of the worker fails
    fresh_redis_server.start()
    assert redis_entity_state(client) == {}
    worker.checkpoint()  # finds the marker gone: writes every entity's last values and logs again

    assert redis_entity_state(client) == before
    assert worker.vectors_published == 2  # rewriting the store publishes nothing


def transaction_records(first: int, customer: str, terminal: str) -> list[Record[Any]]:
    """Two transactions of ``customer`` at ``terminal``, offsets ``first`` and ``first + 1``,
    a minute apart, later the higher ``first`` is."""
    headers = headers_for(Transaction)
    records = []
    for offset in (first, first + 1):
        minute = offset % 60
        transaction = Transaction(
            transaction_id=f"restart-{offset}", customer_id=customer, terminal_id=terminal,
            amount=10.0 + offset, event_time=f"2018-04-01T{14 + offset // 60:02d}:{minute:02d}:00Z")
        records.append(Record(TRANSACTIONS, 0, offset, customer.encode(),
                              decode_transaction_input(encode(transaction), headers),
                              headers, offset))
    return records


def handle_as_the_loop_does(worker: FeatureWorker, records: list[Record[Any]]) -> None:
    """The consumer loop's handling: an outage is retried (Redis is back here, so the
    retry goes through), never dead-lettered."""
    for _ in range(3):
        try:
            worker.handle(records)
            return
        except Exception as error:
            if not is_outage(error):
                raise
    worker.handle(records)


def test_redis_restarted_empty_twice_between_successful_writes_converges_at_once(
        fresh_kafka_broker: Any, fresh_redis_server: Any) -> None:
    """fault-findings F4: a Redis that restarts (empty) between two writes of the worker
    must not cost the entities written before: the next write finds it out and rewrites
    every entity's logs — not the next checkpoint (minutes away in production; the
    decision API reads the logs in between), and not only the entities touched since."""
    kafka = KafkaSettings(bootstrap_servers=fresh_kafka_broker.bootstrap_servers)
    reference_url = fresh_redis_server.url.rsplit("/", 1)[0] + "/2"
    worker = worker_on(kafka, fresh_redis_server.url, "restarts-unit")
    reference = worker_on(kafka, reference_url, "restarts-reference")
    for each in (worker, reference):
        each.checkpoint_interval_s = 3600  # no checkpoint between the batches
    client = redis.Redis.from_url(fresh_redis_server.url)
    batches = [transaction_records(0, "c1", "t1"), transaction_records(2, "c2", "t2"),
               transaction_records(4, "c3", "t3")]
    for number, records in enumerate(batches):
        if number:
            fresh_redis_server.stop()  # between two batches: no write of the worker fails
            fresh_redis_server.start()
            assert redis_entity_state(client) == {}
        handle_as_the_loop_does(worker, records)
    for records in batches:  # after the restarts (same server, another database)
        reference.handle(records)
    expected = redis_entity_state(redis.Redis.from_url(reference_url))
    assert len(expected) == 6  # c1..c3, t1..t3: an event log each
    assert redis_entity_state(client) == expected
    assert (worker.events_applied, worker.vectors_published) == (6, 6)


def test_redis_restarted_empty_while_the_worker_idles_is_rewritten_by_the_idle_hook(
        fresh_kafka_broker: Any, fresh_redis_server: Any) -> None:
    """No record follows the restart: the idle hook's checkpoint_if_due (nothing new to
    checkpoint) still finds the marker gone and writes the logs and the checkpoint again."""
    kafka = KafkaSettings(bootstrap_servers=fresh_kafka_broker.bootstrap_servers)
    worker = worker_on(kafka, fresh_redis_server.url, "idle-restart-unit")
    worker.handle(batch())  # checkpointed (interval 0)
    client = redis.Redis.from_url(fresh_redis_server.url)
    before = redis_entity_state(client)
    assert len(before) == 3
    fresh_redis_server.stop()
    assert worker.checkpoint_if_due() is False  # Redis away: nothing raised, nothing lost
    fresh_redis_server.start()
    assert worker.checkpoint_if_due() is True
    assert redis_entity_state(client) == before
    assert worker.checkpoints is not None and worker.checkpoints.load() is not None
    assert worker.checkpoint_if_due() is False  # marker back: nothing more to do
