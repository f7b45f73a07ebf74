"""Read a topic from its beginning without joining a consumer group.

For tools and inspections (dead-letter listing, the demo's summary, tests):
assigning partitions directly leaves no committed offsets behind and does
not disturb the services' groups. The read ends after ``max_records`` or
once no record arrived for ``idle_timeout_s`` — never by comparing with the
broker's end offsets, which some Kafka-protocol brokers report wrongly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from rtml_common.config import KafkaSettings
from rtml_common.kafka.consumer import fetch_limits


def iter_topic(
    bootstrap_servers: str,
    topic: str,
    max_records: int | None = None,
    idle_timeout_s: float = 2.0,
    metadata_timeout_s: float = 10.0,
    **overrides: Any,
) -> Iterator[Message]:
    """Yield the records of every partition of ``topic`` from offset 0."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap_servers,
        "group.id": "rtml-reader",  # required by the client; never committed
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        # Whole records of RTML_KAFKA_MAX_MESSAGE_BYTES (dead letters are that big at most).
        **fetch_limits(KafkaSettings().max_message_bytes),
        **overrides,
    })
    try:
        metadata = consumer.list_topics(topic, timeout=metadata_timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None:
            reason = metadata.error if metadata is not None else "not found"
            raise KafkaException(f"cannot read topic {topic!r}: {reason}")
        consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(metadata.partitions)]
        )
        seen = 0
        last_record = time.monotonic()
        while max_records is None or seen < max_records:
            batch = consumer.consume(num_messages=500, timeout=min(0.5, idle_timeout_s))
            records = [m for m in batch if m.error() is None]
            if not records:
                if time.monotonic() - last_record > idle_timeout_s:
                    return
                continue
            last_record = time.monotonic()
            for message in records:
                yield message
                seen += 1
                if max_records is not None and seen >= max_records:
                    return
    finally:
        consumer.close()


def read_topic(
    bootstrap_servers: str, topic: str, max_records: int | None = None,
    idle_timeout_s: float = 2.0, **overrides: Any,
) -> list[Message]:
    """All records :func:`iter_topic` yields, as a list."""
    return list(iter_topic(bootstrap_servers, topic, max_records, idle_timeout_s, **overrides))
