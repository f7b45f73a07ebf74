"""Producers map keys to partitions as the Java client does, so every engine co-partitions.

The Flink job's Kafka sink (Java) and Faust (aiokafka) place a key with murmur2; librdkafka
defaults to CRC32. Ours use ``murmur2_random``: the same customer's records land on the same
partition number whichever client produced them (checked against aiokafka's murmur2, a
port of the Java client's), on a real broker.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2
from confluent_kafka import Consumer, TopicPartition

from rtml_common.config import KafkaSettings
from rtml_common.kafka.admin import ensure_topics
from rtml_common.kafka.producer import EventProducer, producer_config
from rtml_localstack.testing import KafkaBroker

PARTITIONS = 4


def java_partition(key: bytes, partitions: int) -> int:
    """The Java client's default partition of a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_the_producer_config_names_the_java_compatible_partitioner() -> None:
    assert producer_config(KafkaSettings())["partitioner"] == "murmur2_random"


def test_keyed_records_land_where_the_java_client_puts_them(
        fresh_kafka_broker: KafkaBroker) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, ["keyed"], partitions={"keyed": PARTITIONS}, replication_factor=1)
    keys = [f"customer-{i}".encode() for i in range(200)]
    with EventProducer(KafkaSettings(bootstrap_servers=bootstrap)) as producer:
        for key in keys:
            producer.send_raw("keyed", key, b"{}")
        producer.flush()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "partitioner-check",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition("keyed", p, 0) for p in range(PARTITIONS)])
        placed: dict[bytes, int] = {}
        while len(placed) < len(keys):
            message = consumer.poll(10.0)
            assert message is not None, f"only {len(placed)} of {len(keys)} records read back"
            assert message.error() is None
            placed[message.key()] = message.partition()
    finally:
        consumer.close()
    assert placed == {key: java_partition(key, PARTITIONS) for key in keys}
    assert len(set(placed.values())) == PARTITIONS
