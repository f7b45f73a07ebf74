"""The lean ``features`` decoder and the batch output encoders, without servers.

The decoder must accept exactly what ``FeatureVector`` accepts (same values)
and refuse everything else with pydantic's precise reason; the batch encoders
must write the same bytes as the one-output functions.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from rtml_common.events import MAX_AMOUNT, FeatureVector, Prediction, ShadowScore
from rtml_common.serde import SCHEMA_VERSION_HEADER, DecodeError, decode, encode, headers_for
from rtml_scorer.decoding import ScoringVector, decode_vector
from rtml_scorer.outputs import (
    output_heads,
    prediction_json,
    predictions_json,
    shadow_json,
    shadow_scores_json,
)

T0 = datetime(2018, 4, 1, 12, 30, 0, 123456, tzinfo=UTC)
HEADERS = headers_for(FeatureVector)
VALID = {
    "transaction_id": "tx-1", "customer_id": "c1", "terminal_id": "t1",
    "event_time": "2018-04-01T12:30:00.123456Z", "amount": 12.5, "feature_set": "baseline",
    "feature_set_version": "abc", "features": {"a": 1.5, "b": 2, "c": -0.25}, "revision": 0,
    "computed_at": "2018-04-01T12:30:01+02:00",
}


def raw(**changes: object) -> bytes:
    fields = {**VALID, **changes}
    return orjson.dumps({k: v for k, v in fields.items() if v is not DROP})


DROP = object()


def same_as_pydantic(value: bytes) -> ScoringVector:
    lean = decode_vector(value, HEADERS)
    full = decode(value, FeatureVector, HEADERS)
    assert (lean.transaction_id, lean.customer_id, lean.event_time, lean.features,
            lean.revision) == (full.transaction_id, full.customer_id, full.event_time,
                               full.features, full.revision)
    assert lean.event_time.tzinfo is UTC
    assert lean.raw is value
    return lean


def test_a_valid_vector_decodes_like_the_event() -> None:
    vector = same_as_pydantic(raw())
    assert vector.event_time == T0
    assert same_as_pydantic(encode(decode(raw(), FeatureVector))).features["b"] == 2.0


@pytest.mark.parametrize("changes", [
    {"terminal_id": DROP, "revision": DROP},  # optional fields absent
    {"terminal_id": None, "revision": 3},
    {"event_time": "2018-04-01T14:30:00.123456+02:00"},  # normalised to UTC
    {"amount": 0},
    {"amount": MAX_AMOUNT},
    {"features": {}},
    {"computed_at": "2018-04-01T12:30:01.000001+00:00"},
])
def test_valid_variants_on_the_fast_path(changes: dict[str, object]) -> None:
    same_as_pydantic(raw(**changes))


@pytest.mark.parametrize("changes", [
    {"event_time": "2018-04-01T12:30:00.1234567Z"},  # more than microseconds
    {"computed_at": "2018-04-01T12:30:01.1234567Z"},
    {"event_time": "2018-04-01t12:30:00z"},  # RFC 3339 allows lower case
])
def test_valid_variants_off_the_fast_path_are_decided_by_pydantic(
    changes: dict[str, object],
) -> None:
    same_as_pydantic(raw(**changes))


@pytest.mark.parametrize(("value", "reason"), [
    (b"{not json", "Invalid JSON"),
    (b"[1, 2]", "value: Input should be an object"),
    (raw(amount=-1.0), "amount: Input should be greater than or equal to 0"),
    # Strict types and bounded amounts (issue #17): lax conversions are refused.
    (raw(amount="12.5"), "amount: Input should be a valid number"),
    (raw(amount=True), "amount: Input should be a valid number"),
    (raw(revision=2.0), "revision: Input should be a valid integer"),
    (raw(revision=True), "revision: Input should be a valid integer"),
    (raw(features={"a": "1.5"}), "features.a: Input should be a valid number"),
    (raw(features={"a": False}), "features.a: Input should be a valid number"),
    (raw(amount=1e308), "amount: Input should be less than or equal to"),
    (raw(amount=math.nextafter(MAX_AMOUNT, math.inf)), "amount: Input should be less than"),
    (raw(amount=2**60), "amount: Input should be less than or equal to"),
    (raw().replace(b'"a":1.5', b'"a":1e999'), "features.a: Input should be a finite number"),
    (raw().replace(b'"a":1.5', b'"a":NaN'), "features.a: Input should be a finite number"),
    (raw().replace(b'"a":1.5', b'"a":-Infinity'), "features.a: Input should be a finite"),
    (raw(event_time=1522585800), "event_time: Input should be an RFC 3339 date-time"),
    (raw(computed_at=1522585800.5), "computed_at: Input should be an RFC 3339 date-time"),
    (raw(event_time="2018-04-01 12:30:00Z"), "event_time: Input should be an RFC 3339"),
    (raw(computed_at="2018-04-01 12:30:00Z"), "computed_at: Input should be an RFC 3339"),
    (raw(computed_at="2018-04-01T12:30:00+0200"), "computed_at: Input should be an RFC 3339"),
    (raw(transaction_id=""), "transaction_id: String should have at least 1 character"),
    (raw(customer_id=7), "customer_id: Input should be a valid string"),
    (raw(terminal_id="t" * 129), "terminal_id: String should have at most 128 characters"),
    (raw(event_time="2018-04-01T12:30:00"), "event_time: Value error, datetime must be "
                                            "timezone-aware"),
    (raw(event_time="2018-02-30T12:30:00Z"), "event_time: Input should be a valid datetime"),
    (raw(computed_at="yesterday"), "computed_at: Input should be an RFC 3339 date-time"),
    (raw(features=[1.0]), "features: Input should be an object"),
    (raw(features={"a": None}), "features.a: Input should be a valid number"),
    (raw(revision=-1), "revision: Input should be greater than or equal to 0"),
    (raw(feature_set=""), "feature_set: String should have at least 1 character"),
    (raw(amount=DROP), "amount: Field required"),
    (raw(extra=1), "extra: Extra inputs are not permitted"),
    (None, "tombstone"),
    (raw().replace(b'"amount":12.5', b'"amount":1e999'), "amount: Input should be a finite"),
    (raw(transaction_id="tx-1").replace(b"tx-1", b"tx-\xff"), "Invalid JSON"),  # bad UTF-8
])
def test_malformed_vectors_are_refused_with_the_schema_reason(value: bytes | None,
                                                               reason: str) -> None:
    with pytest.raises(DecodeError, match=reason) as lean:
        decode_vector(value, HEADERS)
    with pytest.raises(DecodeError) as full:
        decode(value, FeatureVector, HEADERS)
    assert str(lean.value) == str(full.value)


def test_schema_version_is_checked_the_last_header_counting() -> None:
    with pytest.raises(DecodeError, match=r"schema version 2\.0"):
        decode_vector(raw(), [(SCHEMA_VERSION_HEADER, b"2.0")])
    with pytest.raises(DecodeError, match=r"schema version 2\.1"):
        decode_vector(raw(), [(SCHEMA_VERSION_HEADER, b"1.0"), (SCHEMA_VERSION_HEADER, b"2.1")])
    assert decode_vector(raw(), [(SCHEMA_VERSION_HEADER, b"2.0"),
                                 (SCHEMA_VERSION_HEADER, b"1.3")]).transaction_id == "tx-1"
    assert decode_vector(raw(), []).transaction_id == "tx-1"


def test_batch_outputs_are_byte_for_byte_the_single_ones() -> None:
    vectors = [decode_vector(raw(transaction_id=f"tx-{i}", customer_id=f"c\"{i}"), HEADERS)
               for i in range(3)]
    vectors.append(decode(raw(event_time="2018-04-01T14:30:00+02:00"), FeatureVector))
    scores = [0.0, 1.0, 1e-07, 0.123456789]
    scored_at = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=timezone(timedelta(0)))
    heads = output_heads(vectors)
    assert predictions_json(heads, "m", "3", scores, 0.01, scored_at) == [
        prediction_json(v, "m", "3", s, 0.01, scored_at) for v, s in zip(vectors, scores,
                                                                         strict=True)]
    for champion in ("3", None):
        shadows = shadow_scores_json(heads, "m", "4", scores, 2.5, scored_at, champion)
        assert shadows == [shadow_json(v, "m", "4", s, 2.5, scored_at, champion)
                           for v, s in zip(vectors, scores, strict=True)]
        assert decode(shadows[0], ShadowScore).champion_version == champion
    assert decode(predictions_json(heads, "m", "3", scores, 0.01, scored_at)[2],
                  Prediction).score == 1e-07
    assert predictions_json([], "m", "3", [], 0.01, scored_at) == []


@pytest.mark.parametrize("stamp", [
    "2018-04-01T12:30:00Z", "2018-04-01t12:30:00z", "2018-04-01 12:30:00Z",
    "2018-04-01T12:30:00+0200", "2018-04-01T12:30:00.1234567891Z", "2018-04-01T23:59:60Z",
    "2018-04-01T24:00:00Z", "20180401T123000Z", "2018-04-01T12:30Z", "2018-04-01T12:30:00.Z",
    "2018-04-01T12:30:00,5Z", "2018-04-01T12:30:00-00:00", "2018-04-01T12:30:00+24:00",
    "0000-04-01T12:30:00Z", "2018-02-29T12:30:00Z", "2018-04-01T12:30:00+02", "1522585800",
    "2018-04-01", "2018-04-01T12:30:00+00:60", "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
])
@pytest.mark.parametrize("field", ["event_time", "computed_at"])
def test_timestamp_spellings_are_accepted_exactly_when_pydantic_accepts_them(
    field: str, stamp: str,
) -> None:
    value = raw(**{field: stamp})
    try:
        full = decode(value, FeatureVector, HEADERS)
    except DecodeError as refused:
        with pytest.raises(DecodeError) as lean:
            decode_vector(value, HEADERS)
        assert str(lean.value) == str(refused)
    else:
        assert decode_vector(value, HEADERS).event_time == full.event_time
        assert full.computed_at.tzinfo is not None
