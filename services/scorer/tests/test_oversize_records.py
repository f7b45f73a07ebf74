"""A ~1 MB record on ``features`` / ``labels`` no longer crash-loops the scorer.

Issue #17, finding 2: a 999,957-byte invalid value under a 7-byte key (the
largest record a default producer writes) made a dead letter the producer
refused (``MSG_SIZE_TOO_LARGE``); the scorer exited before committing and
died again on every restart. Here the scorer runs (in-process, as the other
integration tests run it) over such a record on ``features`` and on
``labels``, plus a *valid* vector of nearly the same size that it refuses
itself (a missing feature: its own dead-letter path), between valid vectors.
Every valid vector is scored, the three big records are in their dead-letter
topics cut to fit with the original's size and SHA-256, and the group's
offsets are committed past them.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from rtml_common.events import FeatureVector, Prediction
from rtml_common.kafka.dead_letter import DeadLetter, record_size
from rtml_common.serde import decode, encode, headers_for

pytestmark = pytest.mark.integration

KEY = b"c123456"
ISSUE_VALUE_BYTES = 999_957  # with KEY: librdkafka's default limit, 1,000,000, exactly
LIMIT = 1_000_000


def sha(data: bytes | None) -> str:
    return hashlib.sha256(data or b"").hexdigest()


def refused_vector_near_the_limit(d: Any) -> FeatureVector:
    """A valid vector lacking a model feature, padded until its record is the limit."""
    features = {name: 1.0 for name in d.names[1:]}  # the first model feature is missing
    pad = {f"pad_{k:06d}": 0.5 for k in range(55_000)}
    vector = d.vector(9000, KEY.decode(), d.at(0), features={**features, **pad})
    room = LIMIT - record_size(KEY, encode(vector), headers_for(FeatureVector))
    assert 0 < room < 100_000
    # One more feature whose name takes the remaining room (name + quotes, colon, comma, 0.5).
    last = "z" * (room - len('"":0.5,'))
    return d.vector(9000, KEY.decode(), d.at(0), features={**features, **pad, last: 0.5})


def test_one_megabyte_records_are_dead_lettered_and_the_scorer_goes_on(deployment: Any) -> None:
    d = deployment
    d.register(d.xgb_model(1), "champion")
    before = [d.vector(i, c, d.at(i)) for i, c in enumerate(d.customers())]
    after = [d.vector(100 + i, c, d.at(100 + i)) for i, c in enumerate(d.customers())]
    refused = refused_vector_near_the_limit(d)
    assert record_size(KEY, encode(refused), headers_for(FeatureVector)) == LIMIT
    oversized = {"features": b"{" + b"f" * (ISSUE_VALUE_BYTES - 1),
                 "labels": b"\xff" * ISSUE_VALUE_BYTES}

    d.produce(before)
    default_client = Producer({"bootstrap.servers": d.broker.bootstrap_servers})
    for topic, value in oversized.items():
        default_client.produce(topic, value, KEY)  # as the issue produced it: no headers
    assert default_client.flush(30) == 0
    d.produce([refused, *after])

    running = d.start_scorer()
    d.wait_until(lambda: running.scorer.predictions >= len(before) + len(after)
                 and running.scorer.dead_lettered >= 1, what="every valid vector scored")

    def dead_letters(topic: str) -> list[Any]:
        return d.read_all(f"{topic}.dlq", idle_s=0.5)

    d.wait_until(lambda: len(dead_letters("features")) >= 2 and len(dead_letters("labels")) >= 1,
                 what="the big records dead-lettered")
    run = running.finish()

    predictions = [decode(r.value(), Prediction) for r in d.read_all("predictions")]
    assert Counter(p.transaction_id for p in predictions) == Counter(
        v.transaction_id for v in [*before, *after])
    assert run.loop.dead_lettered == 2 and run.dead_lettered == 1

    letters = {}
    for record in [*dead_letters("features"), *dead_letters("labels")]:
        assert record_size(record.key(), record.value(), record.headers()) <= LIMIT
        letter = DeadLetter.from_message(record)
        letters[(letter.source_topic, letter.error_type)] = letter
    assert set(letters) == {("features", "DecodeError"), ("labels", "DecodeError"),
                            ("features", "MissingFeature")}
    originals = {("features", "DecodeError"): oversized["features"],
                 ("labels", "DecodeError"): oversized["labels"],
                 ("features", "MissingFeature"): encode(refused)}
    for where, original in originals.items():
        letter = letters[where]
        assert letter.key == KEY and letter.truncated == ("value",)
        assert letter.value is not None and original.startswith(letter.value)
        assert (letter.original_bytes, letter.original_sha256) == (len(original), sha(original))
    assert d.names[0] in letters[("features", "MissingFeature")].reason

    # Committed past the big records: a restart does not meet them again.
    consumer = Consumer({"bootstrap.servers": d.broker.bootstrap_servers,
                         "group.id": f"g-{d.name}"})
    try:
        partitions = consumer.list_topics("features", timeout=10).topics["features"].partitions
        committed = consumer.committed([TopicPartition(t, p) for t in ("features", "labels")
                                        for p in partitions], timeout=10)
    finally:
        consumer.close()
    per_topic = Counter[str]()
    for tp in committed:
        per_topic[tp.topic] += max(tp.offset, 0)
    assert per_topic == {"features": len(before) + len(after) + 2, "labels": 1}
