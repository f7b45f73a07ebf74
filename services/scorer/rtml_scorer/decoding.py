"""A lean decoder for ``features`` records: what the scorer needs, as fast as it is safe.

Validating a :class:`~rtml_common.events.FeatureVector` with pydantic costs
~5 µs here (two datetime validators call back into Python), a third of the
scorer's per-event budget. :func:`decode_vector` parses with orjson (~1.3 µs)
and checks, in plain Python, every constraint the schema states: exact field
set, id lengths, aware RFC 3339 datetimes, a finite non-negative amount,
non-empty feature-set names, ``features`` a dict of numbers, ``revision`` a
non-negative int, a compatible ``rtml-schema-version`` header. It builds a
:class:`ScoringVector` (only the fields scoring reads, plus the record's
bytes for the dead-letter path).

It is never *more lenient* than the schema: anything outside the fast path's
narrow shape (an int-valued float written as ``1.0`` revision, a numeric
string, another datetime spelling, a bool, a missing or extra field, bad
JSON) goes to pydantic, which either accepts it — the same vector, converted
— or raises :class:`~rtml_common.serde.DecodeError` with its precise reason,
so the consumer loop dead-letters it. A record is therefore scored exactly
when ``FeatureVector`` accepts it, and refused with the same reason.

>>> raw = (b'{"transaction_id":"t1","customer_id":"c1","event_time":"2018-04-01T00:00:00Z",'
...        b'"amount":2.5,"feature_set":"baseline","feature_set_version":"v1",'
...        b'"features":{"a":1.0,"b":2},"computed_at":"2018-04-01T00:00:01Z"}')
>>> vector = decode_vector(raw, [])
>>> vector.transaction_id, vector.features, vector.revision, vector.event_time.isoformat()
('t1', {'a': 1.0, 'b': 2}, 0, '2018-04-01T00:00:00+00:00')
>>> decode_vector(raw.replace(b'"amount":2.5', b'"amount":-1'), [])
Traceback (most recent call last):
...
rtml_common.serde.DecodeError: FeatureVector: amount: Input should be greater than or equal to 0
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from rtml_common.events import FeatureVector
from rtml_common.serde import (
    SCHEMA_VERSION_HEADER,
    DecodeError,
    check_schema_version,
    decode,
)


class ScoringVector:
    """The fields of a ``FeatureVector`` the scorer reads, and the record's original bytes."""

    __slots__ = ("customer_id", "event_time", "features", "raw", "revision", "transaction_id")

    def __init__(self, transaction_id: str, customer_id: str, event_time: datetime,
                 features: dict[str, float], revision: int, raw: bytes) -> None:
        self.transaction_id = transaction_id
        self.customer_id = customer_id
        #: UTC, like ``FeatureVector.event_time``.
        self.event_time = event_time
        self.features = features
        self.revision = revision
        #: The record value as consumed: dead letters copy it byte for byte.
        self.raw = raw

    @classmethod
    def of(cls, vector: FeatureVector, raw: bytes) -> ScoringVector:
        return cls(vector.transaction_id, vector.customer_id, vector.event_time,
                   vector.features, vector.revision, raw)

    def __repr__(self) -> str:
        return (f"ScoringVector({self.transaction_id!r}, revision={self.revision}, "
                f"{len(self.features)} features)")


#: The RFC 3339 shape both ``datetime.fromisoformat`` and pydantic read the same way.
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)",
                      re.ASCII)
#: Ints beyond this may not convert to a float exactly; pydantic decides about them.
_EXACT_INT = 2**53
_FLOAT_ONLY = {float}
_NUMBER = {float, int}
#: Header values already checked (producers send the same few over and over).
_compatible_versions: set[bytes] = set()


def _aware(value: Any) -> datetime | None:
    """An aware datetime in UTC, or None when the value is off the fast path."""
    if type(value) is not str or _RFC3339.fullmatch(value) is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:  # e.g. February 30th: pydantic names it
        return None
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def _numbers(values: Any) -> bool:
    """True when every value is a float, or an int a float holds exactly (no bools)."""
    kinds = set(map(type, values))
    if kinds <= _FLOAT_ONLY:
        return True
    if kinds - _NUMBER:
        return False
    return all(type(v) is float or -_EXACT_INT <= v <= _EXACT_INT for v in values)


def _fast(data: Any, raw: bytes) -> ScoringVector | None:
    """The vector when ``data`` is on the fast path and valid, else None (ask pydantic).

    Written out inline: every Python call costs ~0.1 µs here.
    """
    if type(data) is not dict:
        return None
    try:
        transaction_id = data["transaction_id"]
        customer_id = data["customer_id"]
        amount = data["amount"]
        feature_set = data["feature_set"]
        feature_set_version = data["feature_set_version"]
        features = data["features"]
        event_time = data["event_time"]
        computed_at = data["computed_at"]
    except KeyError:
        return None
    terminal_id = data.get("terminal_id")
    revision = data.get("revision", 0)
    # The 8 required fields are present: any other key beyond the 2 optional ones is extra.
    if len(data) != 8 + ("terminal_id" in data) + ("revision" in data):
        return None
    if not (type(transaction_id) is str and 0 < len(transaction_id) <= 128
            and type(customer_id) is str and 0 < len(customer_id) <= 128
            and (terminal_id is None
                 or (type(terminal_id) is str and 0 < len(terminal_id) <= 128))
            and type(feature_set) is str and feature_set
            and type(feature_set_version) is str and feature_set_version
            and type(revision) is int and revision >= 0
            and type(features) is dict and _numbers(features.values())):
        return None
    if type(amount) is float:
        if not (amount >= 0 and math.isfinite(amount)):
            return None
    elif type(amount) is not int or not 0 <= amount <= _EXACT_INT:
        return None
    moment = _aware(event_time)
    if moment is None or _aware(computed_at) is None:
        return None
    return ScoringVector(transaction_id, customer_id, moment, features, revision, raw)


def decode_vector(value: bytes | None,
                  headers: Sequence[tuple[str, bytes | None]]) -> ScoringVector:
    """A ``features`` record as a :class:`ScoringVector`; :class:`DecodeError` if invalid."""
    if value is None:
        raise DecodeError("FeatureVector: empty record value (tombstone)")
    declared = None
    for name, header in headers:  # header_value() inlined: the last one counts
        if name == SCHEMA_VERSION_HEADER:
            declared = header
    if declared is not None and declared not in _compatible_versions:
        check_schema_version(FeatureVector, headers)  # raises if incompatible
        if len(_compatible_versions) < 64:
            _compatible_versions.add(declared)
    try:
        vector = _fast(orjson.loads(value), value)
    except orjson.JSONDecodeError:
        vector = None
    if vector is not None:
        return vector
    # Off the fast path: pydantic decides, and names the problem when there is one.
    return ScoringVector.of(decode(value, FeatureVector), value)
