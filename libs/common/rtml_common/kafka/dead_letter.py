"""Dead-letter records: the original bytes plus why and where they failed.

A record that cannot be processed is copied, byte for byte (key, value and
original headers), to ``<topic>.dlq`` with ``rtml-dlq-*`` headers describing
its origin (topic, partition, offset, consumer group) and the failure (reason,
error type, attempts, time). Nothing is re-encoded, so the record can be
repaired and replayed onto its source topic exactly as it was produced — and
non-Python tools can read the reason straight from the headers.

>>> headers = dead_letter_headers("transactions", 2, 41, "feature-pipeline",
...                               "Transaction: amount: Field required", "DecodeError", 1)
>>> dict(headers)["rtml-dlq-source-offset"]
b'41'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import Message

from rtml_common.events import utcnow
from rtml_common.kafka.headers import HeaderList, normalise_headers
from rtml_common.serde import header_value
from rtml_common.topics import DEAD_LETTER_SUFFIX, dead_letter_topic

_PREFIX = "rtml-dlq-"
REASON = _PREFIX + "reason"
ERROR_TYPE = _PREFIX + "error-type"
SOURCE_TOPIC = _PREFIX + "source-topic"
SOURCE_PARTITION = _PREFIX + "source-partition"
SOURCE_OFFSET = _PREFIX + "source-offset"
CONSUMER_GROUP = _PREFIX + "consumer-group"
ATTEMPTS = _PREFIX + "attempts"
FAILED_AT = _PREFIX + "failed-at"

#: Reasons are truncated so one bad record cannot produce an oversized header.
MAX_REASON_BYTES = 4096


def dead_letter_headers(
    topic: str,
    partition: int,
    offset: int,
    group_id: str,
    reason: str,
    error_type: str,
    attempts: int,
    failed_at: datetime | None = None,
) -> list[tuple[str, bytes]]:
    """The ``rtml-dlq-*`` headers that describe one failure."""
    return [
        (REASON, reason.encode(errors="replace")[:MAX_REASON_BYTES]),
        (ERROR_TYPE, error_type.encode()),
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
        (CONSUMER_GROUP, group_id.encode()),
        (ATTEMPTS, str(attempts).encode()),
        (FAILED_AT, (failed_at or utcnow()).isoformat().encode()),
    ]


def _source_headers(headers: HeaderList) -> HeaderList:
    """The headers a record had before any dead-lettering described it."""
    return [(k, v) for k, v in headers if not k.startswith(_PREFIX)]


def dead_letter_record(
    message: Message, group_id: str, reason: str, error_type: str, attempts: int
) -> tuple[str, bytes | None, bytes | None, HeaderList]:
    """(dlq topic, key, value, headers) for a failed source message.

    The source's own headers are kept ahead of the ``rtml-dlq-*`` ones, minus
    any earlier ``rtml-dlq-*`` headers (a replayed record that fails again
    describes its latest failure, not a stale one).
    """
    topic = message.topic() or "unknown"
    original = _source_headers(normalise_headers(message.headers()))
    headers: HeaderList = [
        *original,
        *dead_letter_headers(
            topic,
            message.partition() or 0,
            message.offset() or 0,
            group_id,
            reason,
            error_type,
            attempts,
        ),
    ]
    return dead_letter_topic(topic), message.key(), message.value(), headers


@dataclass(frozen=True)
class DeadLetter:
    """A record read back from a dead-letter topic."""

    source_topic: str
    source_partition: int
    source_offset: int
    consumer_group: str
    reason: str
    error_type: str
    attempts: int
    failed_at: str
    key: bytes | None
    value: bytes | None
    original_headers: HeaderList

    @classmethod
    def from_message(cls, message: Message) -> DeadLetter:
        """Parse a dead-letter topic record; raises ValueError if it is not one."""
        return cls.from_parts(message.topic() or "", message.key(), message.value(),
                              normalise_headers(message.headers()))

    @classmethod
    def from_parts(cls, topic: str, key: bytes | None, value: bytes | None,
                   headers: HeaderList) -> DeadLetter:
        """Parse a dead-letter record given as its parts (e.g. a detached test record)."""
        if not topic.endswith(DEAD_LETTER_SUFFIX):
            raise ValueError(f"{topic!r} is not a dead-letter topic")

        def text(name: str) -> str:
            found = header_value(headers, name)
            if found is None:
                raise ValueError(f"dead-letter record at {topic} lacks header {name!r}")
            return found.decode(errors="replace")

        return cls(
            source_topic=text(SOURCE_TOPIC),
            source_partition=int(text(SOURCE_PARTITION)),
            source_offset=int(text(SOURCE_OFFSET)),
            consumer_group=text(CONSUMER_GROUP),
            reason=text(REASON),
            error_type=text(ERROR_TYPE),
            attempts=int(text(ATTEMPTS)),
            failed_at=text(FAILED_AT),
            key=key,
            value=value,
            original_headers=_source_headers(headers),
        )
