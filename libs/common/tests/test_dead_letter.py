"""Dead-letter headers carry origin and reason, and parse back."""

from typing import Any

import pytest

from rtml_common.kafka.dead_letter import (
    MAX_REASON_BYTES,
    REASON,
    DeadLetter,
    dead_letter_record,
)


class FakeMessage:
    """Pure-logic stand-in for confluent_kafka.Message (no broker involved)."""

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None,
                 value: bytes | None, headers: list[tuple[str, bytes | None]] | None) -> None:
        self._fields: dict[str, Any] = dict(topic=topic, partition=partition, offset=offset,
                                            key=key, value=value, headers=headers)

    def topic(self) -> str:
        return str(self._fields["topic"])

    def partition(self) -> int:
        return int(self._fields["partition"])

    def offset(self) -> int:
        return int(self._fields["offset"])

    def key(self) -> bytes | None:
        return self._fields["key"]  # type: ignore[no-any-return]

    def value(self) -> bytes | None:
        return self._fields["value"]  # type: ignore[no-any-return]

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return self._fields["headers"]  # type: ignore[no-any-return]


def test_record_keeps_original_bytes_and_headers() -> None:
    source = FakeMessage("transactions", 3, 77, b"c1", b"\x00garbage", [("trace", b"abc")])
    topic, key, value, headers = dead_letter_record(
        source, "grp", "Transaction: Invalid JSON", "DecodeError", 1)  # type: ignore[arg-type]
    assert (topic, key, value) == ("transactions.dlq", b"c1", b"\x00garbage")
    assert headers[0] == ("trace", b"abc")
    parsed = DeadLetter.from_message(
        FakeMessage(topic, 0, 0, key, value, headers))  # type: ignore[arg-type]
    assert parsed.source_topic == "transactions"
    assert (parsed.source_partition, parsed.source_offset) == (3, 77)
    assert parsed.reason == "Transaction: Invalid JSON"
    assert parsed.error_type == "DecodeError"
    assert parsed.consumer_group == "grp"
    assert parsed.original_headers == [("trace", b"abc")]


def test_refailed_record_describes_only_its_latest_failure() -> None:
    first = dead_letter_record(FakeMessage("labels", 0, 5, None, b"x", None),  # type: ignore[arg-type]
                               "g", "first", "DecodeError", 1)
    replayed = FakeMessage("labels", 1, 9, None, b"x", first[3])
    headers = dead_letter_record(replayed, "g", "second", "ValueError", 4)[3]  # type: ignore[arg-type]
    assert [v for k, v in headers if k == REASON] == [b"second"]


def test_oversized_reason_is_truncated() -> None:
    headers = dead_letter_record(FakeMessage("labels", 0, 0, None, b"x", None),  # type: ignore[arg-type]
                                 "g", "r" * 10_000, "E", 1)[3]
    reason = dict(headers)[REASON]
    assert reason is not None and len(reason) == MAX_REASON_BYTES


def test_non_dead_letter_record_is_refused() -> None:
    with pytest.raises(ValueError, match="not a dead-letter topic"):
        DeadLetter.from_message(FakeMessage("labels", 0, 0, None, b"", []))  # type: ignore[arg-type]
