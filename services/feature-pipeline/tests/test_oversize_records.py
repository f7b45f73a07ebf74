"""A ~1 MB invalid record on ``transactions`` / ``labels`` no longer crash-loops the worker.

Issue #17, finding 2: a 999,957-byte value under a 7-byte key is the largest
record a default producer writes; dead-lettering it added headers, the dead
letter was refused (``MSG_SIZE_TOO_LARGE``), the worker exited without
committing and died again on every restart. Here the worker runs as its own
process (``python -m rtml_feature_pipeline``, exiting when idle) over such a
record on each input topic, between valid ones: it exits 0, every valid
transaction gets its vector, each big record is in its dead-letter topic cut
to fit with the original's size and SHA-256, and the group's offsets are
committed past them, so a restart does not meet them again.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from rtml_common.config import KafkaSettings
from rtml_common.events import FeatureVector, Label, Transaction
from rtml_common.kafka.admin import ensure_topics
from rtml_common.kafka.dead_letter import DeadLetter, record_size
from rtml_common.kafka.producer import EventProducer
from rtml_common.topics import all_topic_names
from rtml_localstack.testing import consume

pytestmark = pytest.mark.integration

GROUP = "oversize"
KEY = b"c123456"
ISSUE_VALUE_BYTES = 999_957  # with KEY: librdkafka's default limit, 1,000,000, exactly
T0 = datetime(2018, 4, 1, tzinfo=UTC)


def transaction(i: int) -> Transaction:
    return Transaction(transaction_id=f"tx-{i}", event_time=T0 + timedelta(minutes=i),
                       customer_id=KEY.decode(), terminal_id="t1", amount=10.0 + i)


def label(i: int) -> Label:
    return Label(transaction_id=f"tx-{i}", customer_id=KEY.decode(),
                 transaction_time=T0 + timedelta(minutes=i),
                 labeled_at=T0 + timedelta(minutes=i + 1), is_fraud=i % 2 == 0)


def worker(bootstrap: str, redis_url: str) -> subprocess.CompletedProcess[bytes]:
    env = {
        **os.environ,
        "RTML_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RTML_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "RTML_REDIS_URL": redis_url,
        "RTML_FEATURE_PIPELINE_CONSUMER_GROUP": GROUP,
        "RTML_FEATURE_PIPELINE_EXIT_WHEN_IDLE_S": "3",
    }
    return subprocess.run([sys.executable, "-m", "rtml_feature_pipeline"], env=env,
                          capture_output=True, timeout=180, check=False)


def test_a_one_megabyte_invalid_record_on_each_input_is_dead_lettered_and_the_worker_goes_on(
    fresh_kafka_broker: Any, redis_server: Any,
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, all_topic_names(), replication_factor=1)
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/3"
    redis.Redis.from_url(redis_url).flushdb()
    oversized = {"transactions": b"{" + b"t" * (ISSUE_VALUE_BYTES - 1),
                 "labels": b"[" + b"l" * (ISSUE_VALUE_BYTES - 1)}
    assert all(record_size(KEY, v, []) == 1_000_000 for v in oversized.values())

    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    # As the issue produced them (librdkafka's defaults), with the Java client's key mapping
    # that ours use, so KEY's records share a partition with the valid ones.
    default_client = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    with EventProducer(kafka) as producer:
        for i in range(4):
            producer.send(transaction(i))
            producer.send(label(i))
        producer.flush()
        for topic, value in oversized.items():
            default_client.produce(topic, value, KEY)
        assert default_client.flush(30) == 0
        for i in range(4, 8):
            producer.send(transaction(i))
            producer.send(label(i))

    done = worker(bootstrap, redis_url)
    assert done.returncode == 0, done.stderr.decode()[-3000:]

    vectors = [FeatureVector.model_validate_json(r.value or b"")
               for r in consume(bootstrap, "features", 8, timeout_s=30)]
    assert sorted({v.transaction_id for v in vectors}) == [f"tx-{i}" for i in range(8)]
    for topic, value in oversized.items():
        [record] = consume(bootstrap, f"{topic}.dlq", 1, timeout_s=30)
        assert record_size(record.key, record.value, record.headers) <= 1_000_000
        letter = DeadLetter.from_parts(record.topic, record.key, record.value, record.headers)
        assert (letter.source_topic, letter.error_type) == (topic, "DecodeError")
        assert letter.consumer_group == GROUP and letter.key == KEY
        assert letter.truncated == ("value",)
        assert letter.value is not None and value.startswith(letter.value)
        assert letter.original_bytes == ISSUE_VALUE_BYTES
        assert letter.original_sha256 == hashlib.sha256(value).hexdigest()

    # Committed past the big records: a restart starts after them.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
    try:
        committed = consumer.committed(
            [TopicPartition(t, p) for t in oversized for p in range(4)], timeout=10)
    finally:
        consumer.close()
    assert {tp.topic: tp.offset for tp in committed if tp.offset > 0} == {
        "transactions": 9, "labels": 9}
