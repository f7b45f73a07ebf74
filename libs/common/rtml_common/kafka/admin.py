"""Topic administration: create the platform's topics idempotently.

Topics are always created explicitly, with their configured partition counts,
because brokers that auto-create topics pick their own defaults (the local
Tansu broker uses 4 partitions) and co-partitioned topics must agree.

Each created topic gets ``max.message.bytes`` (the largest record batch the
broker accepts for it) to match the producers' ``RTML_KAFKA_MAX_MESSAGE_BYTES``
(:func:`topic_max_message_bytes`), so a record any rtml producer writes —
a dead letter included — is never refused by the broker for its size. It is
never set below Apache Kafka's own default (1,048,588): other clients'
records that fit a default topic keep fitting. (The local Tansu broker
accepts the setting but enforces no limit: it took 20 MB records.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from rtml_common.config import KafkaSettings
from rtml_common.kafka.dead_letter import BATCH_OVERHEAD_BYTES, RECORD_OVERHEAD_BYTES
from rtml_common.topics import DEAD_LETTER_SUFFIX, LATE_SUFFIX, TOPICS, all_topic_names


def default_partitions(topic: str) -> int:
    """The partition count a topic gets unless configured otherwise.

    Dead-letter and late-event topics get one partition: they are low-volume and
    read by people.
    """
    if topic.endswith((DEAD_LETTER_SUFFIX, LATE_SUFFIX)):
        return 1
    spec = TOPICS.get(topic)
    return spec.default_partitions if spec else 1


#: Apache Kafka's default ``message.max.bytes`` / topic ``max.message.bytes``.
KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588


def topic_max_message_bytes(max_message_bytes: int) -> int:
    """The topic ``max.message.bytes`` that admits a batch holding one record of
    ``max_message_bytes`` (the producers' limit), never below Kafka's default.

    >>> topic_max_message_bytes(1_000_000), topic_max_message_bytes(4_000_000)
    (1048588, 4000097)
    """
    batch = max_message_bytes + RECORD_OVERHEAD_BYTES + BATCH_OVERHEAD_BYTES
    return max(KAFKA_DEFAULT_MAX_MESSAGE_BYTES, batch)


def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str] | None = None,
    partitions: Mapping[str, int] | None = None,
    timeout_s: float = 15.0,
    replication_factor: int = -1,
    extra_config: Mapping[str, str] | None = None,
    max_message_bytes: int | None = None,
) -> list[str]:
    """Create the missing ones of ``topics`` (default: all platform topics).

    Returns the names actually created; existing topics are left as they are
    (their partition count is not changed). ``replication_factor=-1`` means the
    broker's default (3 in a production Kafka, pass 1 for a one-broker stack).
    ``max_message_bytes`` (default ``RTML_KAFKA_MAX_MESSAGE_BYTES``) sets the
    created topics' ``max.message.bytes`` (:func:`topic_max_message_bytes`).
    Raises ``KafkaException`` with the
    broker's reason for any other failure.
    """
    wanted = list(topics) if topics is not None else all_topic_names()
    overrides = dict(partitions or {})
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, **(extra_config or {})})
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    missing = [name for name in wanted if name not in existing]
    if not missing:
        return []
    limit = max_message_bytes if max_message_bytes is not None else (
        KafkaSettings().max_message_bytes)
    topic_config = {"max.message.bytes": str(topic_max_message_bytes(limit))}
    new_topics = [
        NewTopic(
            name,
            num_partitions=overrides.get(name, default_partitions(name)),
            replication_factor=replication_factor,
            config=topic_config,
        )
        for name in missing
    ]
    created: list[str] = []
    for name, future in admin.create_topics(new_topics, operation_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise
    return created
