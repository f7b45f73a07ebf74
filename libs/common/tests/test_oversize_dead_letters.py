"""Records at and above the size limit never stop a consumer (issue #17, finding 2).

A dead letter is its original plus ``rtml-dlq-*`` headers, so an original
near ``message.max.bytes`` made a dead letter the producer refused
(``MSG_SIZE_TOO_LARGE``): the consumer died before committing and died again
on every restart. Against a real broker: records of exactly the limit, just
past what a dead letter carries whole, the largest a default producer takes
(the issue's 999,957 bytes) and one three times the limit all land in the
dead-letter topic, cut to fit, with the original's size and SHA-256; valid
neighbours are handled, offsets committed. A dead letter the broker refuses
outright is retried, sent minimal, then logged as undeliverable — the loop
goes on.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from rtml_common.config import KafkaSettings
from rtml_common.events import Transaction
from rtml_common.kafka.admin import ensure_topics
from rtml_common.kafka.consumer import ConsumerLoop, Record
from rtml_common.kafka.dead_letter import (
    FIT_MARGIN_BYTES,
    DeadLetter,
    dead_letter_headers,
    minimal_dead_letter,
    record_size,
)
from rtml_common.kafka.producer import DeliveryError, EventProducer
from rtml_common.serde import DecodeError, decode, headers_for
from rtml_localstack.testing import consume

pytestmark = pytest.mark.integration

LIMIT = 1_000_000  # librdkafka's default message.max.bytes, RTML_KAFKA_MAX_MESSAGE_BYTES's
KEY = b"c123456"
GROUP = "oversize-test"
T0 = datetime(2018, 4, 1, tzinfo=UTC)
#: A failed-at timestamp as wide as the loop's (isoformat with microseconds).
WIDEST_FAILED_AT = datetime(2026, 12, 7, 5, 0, 0, 123456, tzinfo=UTC)


def tx(i: int) -> Transaction:
    return Transaction(transaction_id=str(i), event_time=T0 + timedelta(seconds=i),
                       customer_id=KEY.decode(), terminal_id="t1", amount=float(i))


def settings_for(bootstrap: str, **overrides: Any) -> KafkaSettings:
    fields: dict[str, Any] = {"bootstrap_servers": bootstrap, "session_timeout_ms": 6000,
                              "poll_timeout_s": 0.2, "retry_backoff_s": 0.01}
    fields.update(overrides)
    return KafkaSettings(**fields)


def invalid(size: int) -> bytes:
    """``size`` bytes that are not JSON (the reason does not depend on the size)."""
    return b"{" + b"x" * (size - 1)


def dead_letter_size(topic: str, offset: int, value: bytes,
                     headers: list[tuple[str, bytes | None]]) -> int:
    """Size of the whole (uncut) dead letter the loop builds for this record."""
    try:
        decode(value, Transaction, headers)
    except DecodeError as exc:
        reason = str(exc)
    failure = dead_letter_headers(topic, 0, offset, GROUP, reason, "DecodeError", 1,
                                  WIDEST_FAILED_AT)
    return record_size(KEY, value, [*headers, *failure])


def committed(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)],
                                     timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in offsets if tp.offset >= 0}


def sha(data: bytes | None) -> str:
    return hashlib.sha256(data or b"").hexdigest()


def test_records_at_and_above_the_limit_are_dead_lettered_and_the_loop_goes_on(
    fresh_kafka_broker: Any,
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, ["transactions", "transactions.dlq"], replication_factor=1)
    settings = settings_for(bootstrap)
    typed = headers_for(Transaction)
    budget = LIMIT - FIT_MARGIN_BYTES
    # Offsets in the one partition KEY maps to: valid records at the even ones.
    at_limit = invalid(LIMIT - record_size(KEY, b"", typed))
    whole_size = len(invalid(10)) + budget - dead_letter_size("transactions", 3, invalid(10), typed)
    largest_whole = invalid(whole_size)  # its dead letter fills the budget exactly
    # 8 bytes past: a failed-at time without microseconds (7 bytes shorter) still overflows.
    just_past = invalid(whole_size + 8)
    issue = invalid(LIMIT - 36 - len(KEY))  # 999,957: the largest a default producer takes
    above = invalid(3 * LIMIT)  # another client's record, three times the limit
    small = b"\xffnot json"
    bad: dict[int, tuple[bytes, bool]] = {  # offset -> (value, carried whole?)
        1: (at_limit, False), 3: (largest_whole, True), 5: (just_past, False),
        7: (issue, False), 9: (above, False), 11: (small, True),
    }
    assert len(issue) == 999_957
    assert dead_letter_size("transactions", 3, largest_whole, typed) == budget
    assert dead_letter_size("transactions", 5, just_past, typed) == budget + 8
    with EventProducer(settings) as producer:
        for offset in range(13):
            producer.flush()  # three clients write: keep the offsets in the order above
            if offset not in bad:
                producer.send(tx(offset))
                continue
            value = bad[offset][0]
            if value is issue:  # the issue's record: a default client, no headers
                # librdkafka's defaults but the Java client's key mapping, as ours and
                # most clients use: KEY must land on the partition the others write to.
                default = Producer({"bootstrap.servers": bootstrap,
                                    "partitioner": "murmur2_random"})
                default.produce("transactions", value, KEY)
                assert default.flush(30) == 0
            elif value is above:
                bigger = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 5 * LIMIT,
                                   "partitioner": "murmur2_random"})
                bigger.produce("transactions", value, KEY, headers=typed)
                assert bigger.flush(30) == 0
            else:
                producer.send_raw("transactions", KEY, value, typed)

    handled: list[int] = []

    def handler(batch: list[Record[Transaction]]) -> None:
        handled.extend(int(r.value.transaction_id) for r in batch)

    loop = ConsumerLoop({"transactions": Transaction}, GROUP, handler, settings)
    stats = loop.run(max_idle_s=2.0)

    assert handled == [0, 2, 4, 6, 8, 10, 12]
    assert stats.dead_lettered == len(bad)
    assert loop.producer.dead_letter_stats.truncated == 4
    assert loop.producer.dead_letter_stats.undeliverable == 0
    partition = next(iter({r.partition for r in consume(bootstrap, "transactions", 1)}))
    assert committed(bootstrap, "transactions", 4) == {partition: 13}

    letters = consume(bootstrap, "transactions.dlq", len(bad), timeout_s=30)
    by_offset = {}
    for record in letters:
        assert record_size(record.key, record.value, record.headers) <= budget
        letter = DeadLetter.from_parts(record.topic, record.key, record.value, record.headers)
        by_offset[letter.source_offset] = letter
    assert sorted(by_offset) == sorted(bad)
    for offset, (original, whole) in bad.items():
        letter = by_offset[offset]
        assert letter.error_type == "DecodeError" and "Invalid JSON" in letter.reason
        assert letter.key == KEY
        if whole:
            assert letter.complete and letter.value == original
            continue
        assert letter.truncated == ("value",)
        assert letter.value is not None and original.startswith(letter.value)
        assert len(letter.value) > 900_000  # cut to what fits, not dropped
        assert (letter.original_bytes, letter.original_sha256) == (len(original), sha(original))
    assert by_offset[7].original_headers == []
    assert by_offset[1].original_headers == list(typed)


def test_created_topics_admit_a_whole_record_of_the_limit(fresh_kafka_broker: Any) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, ["labels.dlq"], replication_factor=1)
    ensure_topics(bootstrap, ["features.dlq"], replication_factor=1, max_message_bytes=4_000_000)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resources = [ConfigResource("topic", "labels.dlq"), ConfigResource("topic", "features.dlq")]
    configs = {resource.name: future.result()["max.message.bytes"].value
               for resource, future in admin.describe_configs(resources).items()}
    # Kafka's default where it suffices; above it, room for a 4 MB record and its framing.
    assert configs == {"labels.dlq": "1048588", "features.dlq": "4000097"}


def test_send_raw_to_a_dead_letter_topic_is_fitted_too(fresh_kafka_broker: Any) -> None:
    # Services that dead-letter by themselves (the scorer's refusals) use send_raw.
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, ["features.dlq"], replication_factor=1)
    value = invalid(1_200_000)
    headers = dead_letter_headers("features", 1, 5, "scorer", "no champion", "NoChampion", 1)
    with EventProducer(settings_for(bootstrap)) as producer:
        producer.send_raw("features.dlq", b"c1", value, headers)
    [record] = consume(bootstrap, "features.dlq", 1, timeout_s=20)
    letter = DeadLetter.from_parts(record.topic, record.key, record.value, record.headers)
    assert letter.truncated == ("value",) and letter.original_sha256 == sha(value)
    assert letter.reason == "no champion" and letter.source_offset == 5


def test_a_minimal_dead_letter_round_trips(fresh_kafka_broker: Any) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, ["labels.dlq"], replication_factor=1)
    value = b"\x00" * 10_000
    failure = dead_letter_headers("labels", 0, 9, "g", "bad label", "DecodeError", 1)
    key, none, headers = minimal_dead_letter(b"c1", value, [("h", b"1"), *failure],
                                             "Broker: Message size too large")
    with EventProducer(settings_for(bootstrap)) as producer:
        producer.send_dead_letter("labels.dlq", key, none, headers)
    [record] = consume(bootstrap, "labels.dlq", 1, timeout_s=20)
    letter = DeadLetter.from_parts(record.topic, record.key, record.value, record.headers)
    assert (letter.key, letter.value, letter.original_headers) == (None, None, [])
    assert letter.truncated == ("key", "headers", "value")
    assert (letter.original_bytes, letter.original_sha256) == (10_000, sha(value))
    assert letter.delivery_error == "Broker: Message size too large"


def test_a_dead_letter_the_broker_refuses_is_logged_and_the_loop_commits(
    fresh_kafka_broker: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    # A 249-character topic is valid; its dead-letter twin (253 characters) is not:
    # the broker refuses every form of the dead letter ("Invalid topic").
    bootstrap = fresh_kafka_broker.bootstrap_servers
    source = "s" * 249
    ensure_topics(bootstrap, [source], replication_factor=1)
    settings = settings_for(bootstrap, max_retries=2)
    poison = invalid(50_000)
    with EventProducer(settings) as producer:
        producer.send(tx(0), topic=source)
        producer.send_raw(source, KEY, poison, headers_for(Transaction))
        producer.send(tx(2), topic=source)
    handled: list[str] = []
    loop = ConsumerLoop({source: Transaction}, GROUP,
                        lambda batch: handled.extend(r.value.transaction_id for r in batch),
                        settings)
    with caplog.at_level(logging.WARNING, logger="rtml_common.kafka.producer"):
        stats = loop.run(max_idle_s=2.0)

    assert handled == ["0", "2"]
    assert stats.dead_lettered == 1
    dead = loop.producer.dead_letter_stats
    assert (dead.retried, dead.minimal, dead.undeliverable) == (0, 0, 1)
    assert committed(bootstrap, source, 1) == {0: 3}  # committed past it: no crash loop
    messages = [r.getMessage() for r in caplog.records]
    assert sum("sending it again" in m for m in messages) == 2  # max_retries full retries
    assert sum("sending it minimal" in m for m in messages) == 3  # then minimal, 1 + retries
    [undeliverable] = [r for r in caplog.records if r.levelno == logging.ERROR]
    text = undeliverable.getMessage()
    assert f"{source}[0]@1" in text and f"sha256 {sha(poison)}" in text
    assert "value 50000 bytes" in text and "Invalid JSON" in text


def test_other_failures_still_raise_and_include_refused_dead_letters(
    fresh_kafka_broker: Any,
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    producer = EventProducer(settings_for(bootstrap))
    producer.send_raw("not a valid topic!", b"k", b"v")
    producer.send_dead_letter("s" * 249 + ".dlq", b"k", b"v", dead_letter_headers(
        "s" * 249, 0, 0, GROUP, "bad", "DecodeError", 1))
    with pytest.raises(DeliveryError) as raised:
        producer.flush()
    topics = sorted(f.topic for f in raised.value.failures)
    assert topics == ["not a valid topic!", "s" * 249 + ".dlq"]
    assert producer.dead_letter_stats.undeliverable == 0  # not settled: nothing is committed
