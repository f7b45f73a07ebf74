"""The local Kafka-protocol broker, through real confluent-kafka clients."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from rtml_common.topics import all_topic_names
from rtml_localstack.testing import TEST_SESSION_TIMEOUT_MS, KafkaBroker, consume

pytestmark = pytest.mark.integration


def _topic(broker: KafkaBroker, partitions: int = 3) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[
        name
    ].result(timeout=10)
    return name


def _produce(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], **headers: bytes
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    errors: list[object] = []
    for key, value in records:
        producer.produce(
            topic,
            key=key,
            value=value,
            headers=list(headers.items()),
            on_delivery=lambda err, _msg: errors.append(err) if err else None,
        )
    assert producer.flush(10) == 0
    assert errors == []


def test_platform_topics_exist_with_configured_partitions(kafka_broker: KafkaBroker) -> None:
    metadata = AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers}).list_topics(
        timeout=10
    )
    assert set(all_topic_names()) <= set(metadata.topics)
    assert len(metadata.topics["transactions"].partitions) == 4
    assert len(metadata.topics["transactions.dlq"].partitions) == 1
    assert len(metadata.topics["model-events"].partitions) == 1


def test_keys_headers_and_per_key_order(kafka_broker: KafkaBroker) -> None:
    topic = _topic(kafka_broker, partitions=3)
    sent = [(f"c{i % 5}".encode(), f"v{i}".encode()) for i in range(50)]
    _produce(kafka_broker.bootstrap_servers, topic, sent, source=b"test", trace=b"abc")

    got = consume(kafka_broker.bootstrap_servers, topic, 50, timeout_s=20)

    assert sorted((r.key, r.value) for r in got) == sorted(sent)
    assert all(dict(r.headers) == {"source": b"test", "trace": b"abc"} for r in got)
    # Same key -> same partition, in production order.
    for key in {k for k, _ in sent}:
        mine = [r for r in got if r.key == key]
        assert len({r.partition for r in mine}) == 1
        assert [r.value for r in sorted(mine, key=lambda r: r.offset)] == [
            v for k, v in sent if k == key
        ]


def test_consumer_group_commit_and_resume(kafka_broker: KafkaBroker) -> None:
    topic = _topic(kafka_broker, partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = [(f"k{i}".encode(), f"a{i}".encode()) for i in range(10)]
    _produce(kafka_broker.bootstrap_servers, topic, first)

    got = consume(kafka_broker.bootstrap_servers, topic, 10, group_id=group, commit=True)
    assert sorted(r.value for r in got) == sorted(v for _, v in first)

    second = [(f"k{i}".encode(), f"b{i}".encode()) for i in range(6)]
    _produce(kafka_broker.bootstrap_servers, topic, second)

    # The group resumes after its committed offsets: only the new records.
    resumed = consume(kafka_broker.bootstrap_servers, topic, 6, group_id=group, commit=True)
    assert sorted(r.value for r in resumed) == sorted(v for _, v in second)


def test_consume_times_out_when_records_are_missing(kafka_broker: KafkaBroker) -> None:
    topic = _topic(kafka_broker, partitions=1)
    _produce(kafka_broker.bootstrap_servers, topic, [(b"k", b"only-one")])
    with pytest.raises(TimeoutError, match="got 1 of 2"):
        consume(kafka_broker.bootstrap_servers, topic, 2, timeout_s=2)


def test_two_members_of_a_group_split_the_partitions(kafka_broker: KafkaBroker) -> None:
    topic = _topic(kafka_broker, partitions=4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    config = {
        "bootstrap.servers": kafka_broker.bootstrap_servers,
        "group.id": group,
        "session.timeout.ms": TEST_SESSION_TIMEOUT_MS,
        "auto.offset.reset": "earliest",
    }
    consumers = [Consumer(config), Consumer(config)]
    try:
        for consumer in consumers:
            consumer.subscribe([topic])
        assignments: list[set[int]] = [set(), set()]
        for _ in range(80):  # bounded: ~40 s at most
            for i, consumer in enumerate(consumers):
                consumer.poll(0.25)
                assignments[i] = {tp.partition for tp in consumer.assignment()}
            if assignments[0] and assignments[1] and len(assignments[0] | assignments[1]) == 4:
                break
        assert assignments[0] and assignments[1]
        assert assignments[0].isdisjoint(assignments[1])
        assert assignments[0] | assignments[1] == {0, 1, 2, 3}
    finally:
        for consumer in consumers:
            consumer.close()


def test_fresh_broker_is_empty_and_memory_storage_forgets_on_restart(
    fresh_kafka_broker: KafkaBroker,
) -> None:
    broker = fresh_kafka_broker
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    assert not [t for t in admin.list_topics(timeout=10).topics if not t.startswith("__")]

    topic = _topic(broker, partitions=1)
    _produce(broker.bootstrap_servers, topic, [(b"k", b"v")])
    assert [r.value for r in consume(broker.bootstrap_servers, topic, 1)] == [b"v"]

    old_pid = broker.pid
    broker.kill()
    broker.start()
    assert broker.pid != old_pid
    topics = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=10)
    assert topic not in topics.topics


def test_durable_broker_keeps_records_and_offsets_across_restart(
    kafka_broker_factory,  # type: ignore[no-untyped-def]
) -> None:
    broker: KafkaBroker = kafka_broker_factory(durable=True)
    topic = _topic(broker, partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = [(f"k{i}".encode(), f"a{i}".encode()) for i in range(20)]
    _produce(broker.bootstrap_servers, topic, first)
    before = consume(broker.bootstrap_servers, topic, 12, group_id=group, commit=True)

    broker.restart()

    everything = consume(broker.bootstrap_servers, topic, 20, timeout_s=20)
    assert sorted(r.value for r in everything) == sorted(v for _, v in first)
    # The group resumes after what it committed before the restart: exactly
    # the 8 records it had not consumed (from memory storage it would start
    # over at the earliest offsets and re-read some of the first 12).
    after = consume(broker.bootstrap_servers, topic, 8, group_id=group, commit=True, timeout_s=20)
    assert {r.value for r in before}.isdisjoint({r.value for r in after})
    assert {r.value for r in before} | {r.value for r in after} == {v for _, v in first}
