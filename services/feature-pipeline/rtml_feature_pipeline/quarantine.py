"""Dead-letter a record the worker has already decoded, through the shared dead-letter path.

The consumer loops dead-letter what fails to *decode*; the worker refuses some
valid records itself (an implausible event time, see :mod:`.event_time_guard`).
Those go the same way — :func:`rtml_common.kafka.dead_letter.dead_letter_record`
(original key, value and headers, ``rtml-dlq-*`` headers with the reason) sent
with the producer's ``send_raw`` — so they look, and are replayed, exactly like
every other dead letter. The worker's :class:`~rtml_common.kafka.consumer.Record`
is shown to it as the source message it was read from.
"""

from __future__ import annotations

from typing import Any, cast

from confluent_kafka import Message

from rtml_common.kafka.consumer import Record
from rtml_common.kafka.dead_letter import dead_letter_record
from rtml_common.kafka.headers import HeaderList
from rtml_common.kafka.producer import EventProducer


class _RecordAsMessage:
    """The parts of a confluent-kafka ``Message`` that ``dead_letter_record`` reads."""

    def __init__(self, record: Record[Any], value: bytes | None) -> None:
        self._record = record
        self._value = value

    def topic(self) -> str:
        return self._record.topic

    def partition(self) -> int:
        return self._record.partition

    def offset(self) -> int:
        return self._record.offset

    def key(self) -> bytes | None:
        return self._record.key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> HeaderList:
        return list(self._record.headers)


def dead_letter(producer: EventProducer, record: Record[Any], value: bytes | None,
                consumer_group: str, reason: str, error_type: str) -> str:
    """Send ``record`` (its original ``value``) to its ``.dlq`` topic; return that topic."""
    topic, key, raw, headers = dead_letter_record(
        cast(Message, _RecordAsMessage(record, value)), consumer_group, reason, error_type,
        attempts=1)
    producer.send_raw(topic, key, raw, headers)
    return topic
