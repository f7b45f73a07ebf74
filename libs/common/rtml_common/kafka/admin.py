"""Topic administration: create the platform's topics idempotently.

Topics are always created explicitly, with their configured partition counts,
because brokers that auto-create topics pick their own defaults (the local
Tansu broker uses 4 partitions) and co-partitioned topics must agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

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


def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str] | None = None,
    partitions: Mapping[str, int] | None = None,
    timeout_s: float = 15.0,
    replication_factor: int = -1,
    extra_config: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the missing ones of ``topics`` (default: all platform topics).

    Returns the names actually created; existing topics are left as they are
    (their partition count is not changed). ``replication_factor=-1`` means the
    broker's default (3 in a production Kafka, pass 1 for a one-broker stack).
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
    new_topics = [
        NewTopic(
            name,
            num_partitions=overrides.get(name, default_partitions(name)),
            replication_factor=replication_factor,
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
