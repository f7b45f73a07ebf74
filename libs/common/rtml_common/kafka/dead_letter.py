"""Dead-letter records: the original bytes plus why and where they failed.

A record that cannot be processed is copied, byte for byte (key, value and
original headers), to ``<topic>.dlq`` with ``rtml-dlq-*`` headers describing
its origin (topic, partition, offset, consumer group) and the failure (reason,
error type, attempts, time). Nothing is re-encoded, so the record can be
repaired and replayed onto its source topic exactly as it was produced — and
non-Python tools can read the reason straight from the headers.

A dead letter always fits (:func:`fit_dead_letter`). The ``rtml-dlq-*``
headers make it larger than its original, so an original near the size limit
(a default producer accepts a value of up to 1,000,000 bytes minus its key
and librdkafka's 36-byte record framing) would be refused with
``MSG_SIZE_TOO_LARGE`` — and a consumer that cannot dead-letter a record can
neither skip nor commit it. So the record's encoded size (key, value,
headers, framing; :func:`record_size`, librdkafka's own arithmetic) is
checked against the producer's ``message.max.bytes``
(``RTML_KAFKA_MAX_MESSAGE_BYTES``) less :data:`FIT_MARGIN_BYTES`; when it is
too big, the parts are cut to what fits — the key to at most a quarter of
the room, the original headers (whole ones, in order) to a quarter of what
is left, the value to the rest (the issue #17 record, 999,957 bytes under a
7-byte key, keeps its first 999,417) — and headers say what the original was:

* ``rtml-dlq-truncated``: the parts cut, comma-separated (``key``, ``headers``, ``value``);
* ``rtml-dlq-original-bytes`` / ``rtml-dlq-original-sha256``: the full
  value's length and SHA-256 (hex), whether or not the value itself was cut;
* ``rtml-dlq-original-key-bytes`` / ``-key-sha256`` when the key was cut;
* ``rtml-dlq-original-headers-count`` / ``-headers-bytes`` / ``-headers-sha256``
  when original headers were dropped (bytes: names plus values; digest:
  :func:`headers_sha256`).

A dead letter the broker still refuses is retried, then replaced by a
:func:`minimal_dead_letter` (no key, value or original headers: the
failure, the coordinates, sizes and digests, and ``rtml-dlq-delivery-error``);
:class:`~rtml_common.kafka.producer.EventProducer` applies that policy.

>>> headers = dead_letter_headers("transactions", 2, 41, "feature-pipeline",
...                               "Transaction: amount: Field required", "DecodeError", 1)
>>> dict(headers)["rtml-dlq-source-offset"]
b'41'
>>> key, value, fitted = fit_dead_letter(b"c1", b"x" * 50_000, headers, max_bytes=20_000)
>>> record_size(key, value, fitted) == 20_000 - FIT_MARGIN_BYTES  # filled to the byte
True
>>> dict(fitted)["rtml-dlq-truncated"], dict(fitted)["rtml-dlq-original-bytes"]
(b'value', b'50000')
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
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
#: What :func:`fit_dead_letter` / :func:`minimal_dead_letter` cut, and what the original was.
TRUNCATED = _PREFIX + "truncated"
ORIGINAL_BYTES = _PREFIX + "original-bytes"
ORIGINAL_SHA256 = _PREFIX + "original-sha256"
ORIGINAL_KEY_BYTES = _PREFIX + "original-key-bytes"
ORIGINAL_KEY_SHA256 = _PREFIX + "original-key-sha256"
ORIGINAL_HEADERS_COUNT = _PREFIX + "original-headers-count"
ORIGINAL_HEADERS_BYTES = _PREFIX + "original-headers-bytes"
ORIGINAL_HEADERS_SHA256 = _PREFIX + "original-headers-sha256"
#: Set on a :func:`minimal_dead_letter`: why the full dead letter was not accepted.
DELIVERY_ERROR = _PREFIX + "delivery-error"

#: Reasons are truncated so one bad record cannot produce an oversized header.
MAX_REASON_BYTES = 4096
MAX_DELIVERY_ERROR_BYTES = 1024

#: librdkafka's default ``message.max.bytes`` (what a default producer accepts);
#: ``RTML_KAFKA_MAX_MESSAGE_BYTES`` defaults to it.
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
#: librdkafka's worst-case framing of one record (``RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD``:
#: length, attributes, timestamp, offset, key, value and header-count varints at their
#: widest). It refuses a record when this + key + value + serialized headers exceeds
#: ``message.max.bytes`` (measured: a 7-byte key leaves 999,957 value bytes at 1,000,000).
RECORD_OVERHEAD_BYTES = 36
#: Kept free below the limit when fitting, so a future client's framing (or a header
#: encoded one byte wider) cannot turn a fitted dead letter into a refused one.
FIT_MARGIN_BYTES = 64
#: A record batch's own header (v2), which brokers count against a topic's
#: ``max.message.bytes`` on top of the records it holds.
BATCH_OVERHEAD_BYTES = 61


def _varint_size(number: int) -> int:
    """Bytes of a zigzag varint, as librdkafka sizes header lengths."""
    encoded = (number << 1) ^ (number >> 63)
    size = 1
    while encoded >= 0x80:
        encoded >>= 7
        size += 1
    return size


def header_size(name: str, value: bytes | None) -> int:
    """Serialized size of one header in a v2 record (a None value is length -1)."""
    name_len = len(name.encode())
    value_len = -1 if value is None else len(value)
    return _varint_size(name_len) + name_len + _varint_size(value_len) + max(value_len, 0)


def record_size(key: bytes | None, value: bytes | None,
                headers: Sequence[tuple[str, bytes | None]]) -> int:
    """The size librdkafka checks against ``message.max.bytes`` for one record."""
    return (RECORD_OVERHEAD_BYTES + len(key or b"") + len(value or b"")
            + sum(header_size(name, header) for name, header in headers))


def headers_sha256(headers: Sequence[tuple[str, bytes | None]]) -> str:
    """SHA-256 (hex) of headers in order: per header, the UTF-8 name's length (4 bytes,
    big-endian), the name, the value's length (``0xFFFFFFFF`` for None) and the value."""
    digest = hashlib.sha256()
    for name, value in headers:
        encoded = name.encode()
        digest.update(len(encoded).to_bytes(4, "big") + encoded)
        if value is None:
            digest.update(b"\xff\xff\xff\xff")
        else:
            digest.update(len(value).to_bytes(4, "big") + value)
    return digest.hexdigest()


def _sha256(data: bytes | None) -> bytes:
    return hashlib.sha256(data or b"").hexdigest().encode()


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


def _source_headers(headers: Sequence[tuple[str, bytes | None]]) -> HeaderList:
    """The headers a record had before any dead-lettering described it."""
    return [(k, v) for k, v in headers if not k.startswith(_PREFIX)]


_VALUE_INFO = (ORIGINAL_BYTES, ORIGINAL_SHA256)
_KEY_INFO = (ORIGINAL_KEY_BYTES, ORIGINAL_KEY_SHA256)
_HEADERS_INFO = (ORIGINAL_HEADERS_COUNT, ORIGINAL_HEADERS_BYTES, ORIGINAL_HEADERS_SHA256)
_FIT_HEADERS = frozenset((TRUNCATED, DELIVERY_ERROR, *_VALUE_INFO, *_KEY_INFO, *_HEADERS_INFO))
_PARTS = ("key", "headers", "value")


class _Described:
    """A dead letter's parts split into original headers, failure headers and the
    descriptions of its original parts — those an earlier fit already wrote (which
    describe the true original) win over ones computed from the parts at hand."""

    def __init__(self, key: bytes | None, value: bytes | None,
                 headers: Sequence[tuple[str, bytes | None]]) -> None:
        given = list(headers)
        self.source = _source_headers(given)
        self.failure = [(k, v) for k, v in given if k.startswith(_PREFIX) and k not in _FIT_HEADERS]
        prior = {k: v for k, v in given if k in _FIT_HEADERS}
        self.cut = {part.decode() for part in (prior.get(TRUNCATED) or b"").split(b",") if part}

        def info(names: tuple[str, ...], computed: HeaderList) -> HeaderList:
            if all(name in prior for name in names):
                return [(name, prior[name]) for name in names]
            return computed

        self.value_info = info(_VALUE_INFO, [(ORIGINAL_BYTES, str(len(value or b"")).encode()),
                                             (ORIGINAL_SHA256, _sha256(value))])
        self.key_info = [] if key is None and ORIGINAL_KEY_BYTES not in prior else info(
            _KEY_INFO, [(ORIGINAL_KEY_BYTES, str(len(key or b"")).encode()),
                        (ORIGINAL_KEY_SHA256, _sha256(key))])
        size = sum(len(name.encode()) + len(header or b"") for name, header in self.source)
        self.headers_info = [] if not self.source and ORIGINAL_HEADERS_BYTES not in prior else info(
            _HEADERS_INFO, [(ORIGINAL_HEADERS_COUNT, str(len(self.source)).encode()),
                            (ORIGINAL_HEADERS_BYTES, str(size).encode()),
                            (ORIGINAL_HEADERS_SHA256, headers_sha256(self.source).encode())])

    def headers(self, kept: HeaderList, cut: set[str]) -> HeaderList:
        """Kept original headers, the failure, and what the original was."""
        parts = [part for part in _PARTS if part in cut]
        described = [*kept, *self.failure, *self.value_info,
                     (TRUNCATED, ",".join(parts).encode())]
        if "key" in cut:
            described += self.key_info
        if "headers" in cut:
            described += self.headers_info
        return described


def fit_dead_letter(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    max_bytes: int,
) -> tuple[bytes | None, bytes | None, HeaderList]:
    """``(key, value, headers)`` of a dead letter cut to fit ``max_bytes``; see the module doc.

    ``headers`` are the original record's followed by the ``rtml-dlq-*`` ones
    (:func:`dead_letter_record`'s order). A record that fits is returned as
    given. The ``rtml-dlq-*`` headers are never cut (the reason is already
    capped at :data:`MAX_REASON_BYTES`), so ``max_bytes`` must leave room for
    them: :class:`~rtml_common.config.KafkaSettings` refuses a limit under 16 KiB.
    Fitting a fitted record again (to a lower limit) keeps the first
    description of the original.
    """
    budget = max_bytes - FIT_MARGIN_BYTES
    if record_size(key, value, headers) <= budget:
        return key, value, list(headers)
    parts = _Described(key, value, headers)
    cut = set(parts.cut)
    # Key and original headers get a quarter each of the room left once every
    # describing header is counted (as if all parts were cut); the value the rest.
    room = max(budget - record_size(None, None, parts.headers([], set(_PARTS))), 0)
    kept_key = key
    if key is not None and len(key) > room // 4:
        kept_key = key[:room // 4]
        cut.add("key")
    header_room = (room - len(kept_key or b"")) // 4
    kept: HeaderList = []
    for name, header in parts.source:
        size = header_size(name, header)
        if size > header_room:
            cut.add("headers")
            break
        kept.append((name, header))
        header_room -= size
    kept_value = value
    if value is not None:
        value_room = budget - record_size(kept_key, None, parts.headers(kept, cut | {"value"}))
        if len(value) > value_room:
            kept_value = value[:max(value_room, 0)]
            cut.add("value")
    return kept_key, kept_value, parts.headers(kept, cut)


def minimal_dead_letter(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    delivery_error: str,
) -> tuple[None, None, HeaderList]:
    """The last-resort form of a dead letter the broker refused: no key, value or
    original headers — only the ``rtml-dlq-*`` failure headers, the sizes and digests
    of what the original had (an earlier :func:`fit_dead_letter`'s where it cut a
    part, else computed here) and ``rtml-dlq-delivery-error``.

    Nothing becomes unidentifiable: the source coordinates locate the original in
    its topic, and the digests check a copy found there.
    """
    parts = _Described(key, value, headers)
    cut = set(parts.cut)
    if key is not None:
        cut.add("key")
    if parts.source:
        cut.add("headers")
    if value:
        cut.add("value")
    described = parts.headers([], cut)
    described.append((DELIVERY_ERROR,
                      delivery_error.encode(errors="replace")[:MAX_DELIVERY_ERROR_BYTES]))
    return None, None, described


def dead_letter_record(
    message: Message, group_id: str, reason: str, error_type: str, attempts: int,
    max_bytes: int | None = None,
) -> tuple[str, bytes | None, bytes | None, HeaderList]:
    """(dlq topic, key, value, headers) for a failed source message.

    The source's own headers are kept ahead of the ``rtml-dlq-*`` ones, minus
    any earlier ``rtml-dlq-*`` headers (a replayed record that fails again
    describes its latest failure, not a stale one). With ``max_bytes`` the
    record is fitted to it (:func:`fit_dead_letter`);
    :meth:`~rtml_common.kafka.producer.EventProducer.send_dead_letter` fits to
    its own limit anyway.
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
    key, value = message.key(), message.value()
    if max_bytes is not None:
        key, value, headers = fit_dead_letter(key, value, headers, max_bytes)
    return dead_letter_topic(topic), key, value, headers


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
    #: Parts of the original not carried whole (``key``, ``headers``, ``value``): empty
    #: for a dead letter that is the original byte for byte.
    truncated: tuple[str, ...] = ()
    #: Length and SHA-256 (hex) of the original value, when anything was cut.
    original_bytes: int | None = None
    original_sha256: str | None = None
    #: Why the broker refused the full dead letter (a minimal one only).
    delivery_error: str | None = None

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

        def optional(name: str) -> str | None:
            found = header_value(headers, name)
            return None if found is None else found.decode(errors="replace")

        original_bytes = optional(ORIGINAL_BYTES)
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
            truncated=tuple(part for part in (optional(TRUNCATED) or "").split(",") if part),
            original_bytes=None if original_bytes is None else int(original_bytes),
            original_sha256=optional(ORIGINAL_SHA256),
            delivery_error=optional(DELIVERY_ERROR),
        )

    @property
    def complete(self) -> bool:
        """Whether key, value and headers are the original's, byte for byte."""
        return not self.truncated
