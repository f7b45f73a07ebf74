"""Dead letters always fit the producer's size limit, and say what they cut.

The size arithmetic is checked against librdkafka itself (its local
``message.max.bytes`` check needs no broker); fitting and the minimal form
are pure logic over (key, value, headers).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from hypothesis import event, given, settings
from hypothesis import strategies as st

from rtml_common.config import KafkaSettings
from rtml_common.kafka.consumer import consumer_config, fetch_limits
from rtml_common.kafka.dead_letter import (
    DELIVERY_ERROR,
    FIT_MARGIN_BYTES,
    ORIGINAL_BYTES,
    ORIGINAL_HEADERS_BYTES,
    ORIGINAL_HEADERS_COUNT,
    ORIGINAL_HEADERS_SHA256,
    ORIGINAL_KEY_BYTES,
    ORIGINAL_KEY_SHA256,
    ORIGINAL_SHA256,
    SOURCE_OFFSET,
    TRUNCATED,
    DeadLetter,
    dead_letter_headers,
    fit_dead_letter,
    headers_sha256,
    minimal_dead_letter,
    record_size,
)
from rtml_common.kafka.headers import HeaderList
from rtml_common.kafka.producer import EventProducer, producer_config

FAILED_AT = datetime(2026, 12, 7, 5, 0, 0, 123456, tzinfo=UTC)


def failure(offset: int = 41, reason: str = "Transaction: Invalid JSON") -> HeaderList:
    return list(dead_letter_headers("transactions", 2, offset, "feature-pipeline", reason,
                                    "DecodeError", 1, FAILED_AT))


def sha(data: bytes | None) -> str:
    return hashlib.sha256(data or b"").hexdigest()


def header(headers: HeaderList, name: str) -> str | None:
    found = [v for k, v in headers if k == name]
    return found[-1].decode() if found and found[-1] is not None else None


def largest_value_librdkafka_accepts(key: bytes | None, headers: HeaderList,
                                     limit: int) -> int:
    """Binary search over librdkafka's local size check (no broker involved)."""
    producer = Producer({"bootstrap.servers": "127.0.0.1:1", "log_level": 0,
                         "message.max.bytes": limit})
    low, high = -1, limit
    try:
        while low < high:
            middle = (low + high + 1) // 2
            try:
                producer.produce("size-probe", b"v" * middle, key, headers=headers)
                low = middle
            except KafkaException as exc:
                assert exc.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
                high = middle - 1
    finally:
        producer.purge()
    return low


@pytest.mark.parametrize(("key", "headers"), [
    (None, []),
    (b"c123456", []),
    (b"c123456", [("rtml-event-type", b"Transaction")]),
    (b"k" * 300, [("h" * 64, b"x" * 63), ("n", None), ("e", b"")]),
    (b"", [("big", b"a" * 70_000)]),
])
def test_record_size_is_librdkafkas_arithmetic(key: bytes | None, headers: HeaderList) -> None:
    limit = 200_000
    assert largest_value_librdkafka_accepts(key, headers, limit) == (
        limit - record_size(key, b"", headers))


def test_the_issue_record_is_the_largest_a_default_producer_takes() -> None:
    # 999,957 value bytes under a 7-byte key: exactly librdkafka's default limit.
    assert record_size(b"c123456", b"x" * 999_957, []) == 1_000_000


def sized(size: int | None, seed: bytes) -> bytes | None:
    """``size`` bytes repeating ``seed`` (hypothesis draws big sizes cheaply this way)."""
    return None if size is None else (seed * (size // len(seed) + 1))[:size]


sizes = st.one_of(st.none(), st.integers(0, 20), st.integers(0, 400_000))


@settings(max_examples=300, deadline=None)
@given(
    key_size=sizes, value_size=sizes, seed=st.binary(min_size=1, max_size=8),
    header_sizes=st.lists(st.tuples(st.text(min_size=1, max_size=20), sizes), max_size=6),
    reason=st.text(max_size=6000),
    limit=st.integers(min_value=16_384, max_value=250_000),
)
def test_a_fitted_dead_letter_fits_and_describes_its_original(
    key_size: int | None, value_size: int | None, seed: bytes,
    header_sizes: list[tuple[str, int | None]], reason: str, limit: int,
) -> None:
    key, value = sized(key_size, seed), sized(value_size, seed[::-1])
    original: HeaderList = [(name, sized(size, seed)) for name, size in header_sizes]
    headers = [*original, *failure(reason=reason)]
    fitted_key, fitted_value, fitted = fit_dead_letter(key, value, headers, limit)
    assert record_size(fitted_key, fitted_value, fitted) <= limit - FIT_MARGIN_BYTES
    letter = DeadLetter.from_parts("transactions.dlq", fitted_key, fitted_value, fitted)
    assert letter.source_offset == 41 and letter.reason == dict(failure(reason=reason))[
        "rtml-dlq-reason"].decode(errors="replace")
    if record_size(key, value, headers) <= limit - FIT_MARGIN_BYTES:
        event("fits as it is")
        assert (fitted_key, fitted_value, fitted) == (key, value, headers)
        assert letter.complete
        return
    # Cut parts are prefixes of the originals, and the headers say how big each was.
    assert (fitted_key or b"") == (key or b"")[:len(fitted_key or b"")]
    assert (fitted_value or b"") == (value or b"")[:len(fitted_value or b"")]
    assert letter.original_bytes == len(value or b"")
    assert letter.original_sha256 == sha(value)
    cut = set(letter.truncated)
    event(f"cut: {','.join(sorted(cut))}")
    assert ("value" in cut) == (fitted_value != value)
    assert ("key" in cut) == (fitted_key != key)
    if "key" in cut:
        assert header(fitted, ORIGINAL_KEY_BYTES) == str(len(key or b""))
        assert header(fitted, ORIGINAL_KEY_SHA256) == sha(key)
    assert letter.original_headers == original[:len(letter.original_headers)]
    assert ("headers" in cut) == (len(letter.original_headers) < len(original))
    if "headers" in cut:
        assert header(fitted, ORIGINAL_HEADERS_COUNT) == str(len(original))
        assert header(fitted, ORIGINAL_HEADERS_SHA256) == headers_sha256(original)


def test_value_at_the_limit_is_cut_to_fill_the_record_exactly() -> None:
    value = b"{" + b"x" * 999_956
    key, fitted_value, fitted = fit_dead_letter(
        b"c123456", value, [("rtml-event-type", b"Transaction"), *failure()], 1_000_000)
    assert key == b"c123456"
    assert record_size(key, fitted_value, fitted) == 1_000_000 - FIT_MARGIN_BYTES
    assert fitted_value == value[:len(fitted_value or b"")]
    assert header(fitted, TRUNCATED) == "value"
    assert header(fitted, ORIGINAL_BYTES) == "999957"
    assert header(fitted, ORIGINAL_SHA256) == sha(value)
    assert ("rtml-event-type", b"Transaction") in fitted  # small original headers are kept


def test_huge_key_and_headers_are_cut_too() -> None:
    original: HeaderList = [("traceparent", b"00-abc-01"), ("junk", b"j" * 500_000)]
    key, value, fitted = fit_dead_letter(b"k" * 400_000, b"v" * 100, [*original, *failure()],
                                         100_000)
    assert record_size(key, value, fitted) <= 100_000 - FIT_MARGIN_BYTES
    letter = DeadLetter.from_parts("transactions.dlq", key, value, fitted)
    assert letter.truncated == ("key", "headers")
    assert letter.value == b"v" * 100  # the value fitted once key and headers were cut
    assert letter.original_headers == [("traceparent", b"00-abc-01")]
    assert header(fitted, ORIGINAL_KEY_BYTES) == "400000"
    assert header(fitted, ORIGINAL_HEADERS_BYTES) == str(len("traceparent") + 9 + 4 + 500_000)


def test_refitting_keeps_the_first_description_of_the_original() -> None:
    value = b"z" * 300_000
    once = fit_dead_letter(b"c1", value, failure(), 200_000)
    twice = fit_dead_letter(*once, 50_000)
    assert record_size(*twice) <= 50_000 - FIT_MARGIN_BYTES
    assert header(twice[2], ORIGINAL_BYTES) == "300000"
    assert header(twice[2], ORIGINAL_SHA256) == sha(value)
    assert [k for k, _ in twice[2]].count(ORIGINAL_BYTES) == 1


def test_minimal_dead_letter_keeps_coordinates_sizes_and_digests_only() -> None:
    original: HeaderList = [("rtml-event-type", b"Transaction")]
    value = b"\xff" * 5000
    key, none_value, headers = minimal_dead_letter(b"c9", value, [*original, *failure(77)],
                                                   "Broker: Invalid topic")
    assert key is None and none_value is None
    letter = DeadLetter.from_parts("transactions.dlq", key, none_value, headers)
    assert letter.source_offset == 77 and letter.reason == "Transaction: Invalid JSON"
    assert letter.original_headers == []
    assert letter.truncated == ("key", "headers", "value")
    assert (letter.original_bytes, letter.original_sha256) == (5000, sha(value))
    assert header(headers, ORIGINAL_KEY_SHA256) == sha(b"c9")
    assert header(headers, ORIGINAL_HEADERS_SHA256) == headers_sha256(original)
    assert letter.delivery_error == "Broker: Invalid topic"
    assert header(headers, DELIVERY_ERROR) == "Broker: Invalid topic"


def test_minimal_form_of_a_fitted_letter_describes_the_true_original() -> None:
    value = b"q" * 2_000_000
    fitted = fit_dead_letter(b"c1", value, failure(), 1_000_000)
    _, _, headers = minimal_dead_letter(*fitted, "refused")
    assert header(headers, ORIGINAL_BYTES) == "2000000"
    assert header(headers, ORIGINAL_SHA256) == sha(value)
    assert header(headers, SOURCE_OFFSET) == "41"
    assert record_size(None, None, headers) < 16_384


def test_one_limit_configures_producer_consumer_and_dead_letters() -> None:
    settings = KafkaSettings(max_message_bytes=4_000_000)
    assert producer_config(settings)["message.max.bytes"] == 4_000_000
    consumer = consumer_config(settings, "g")
    assert consumer["max.partition.fetch.bytes"] >= 4_000_000 + 36 + 61
    assert consumer["receive.message.max.bytes"] >= consumer["fetch.max.bytes"] + 512
    assert fetch_limits(1_000_000)["max.partition.fetch.bytes"] == 1_048_576  # the default
    # librdkafka refuses inconsistent fetch limits when the client is built (no broker needed).
    for limit in (1_000_000, 4_000_000, 200_000_000):
        Consumer(consumer_config(KafkaSettings(max_message_bytes=limit, bootstrap_servers=(
            "127.0.0.1:1")), "g", log_level=0)).close()
    producer = EventProducer(settings)
    assert producer.max_message_bytes == 4_000_000
    extra = EventProducer(KafkaSettings(extra={"message.max.bytes": "50000"}))
    assert extra.max_message_bytes == 50_000  # dead letters fit what librdkafka enforces


def test_a_limit_too_small_for_a_minimal_dead_letter_is_refused() -> None:
    with pytest.raises(ValueError, match="max_message_bytes"):
        KafkaSettings(max_message_bytes=10_000)
