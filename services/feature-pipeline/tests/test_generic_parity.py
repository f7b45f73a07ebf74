"""A non-classic feature set served end to end: the payments example through the worker.

A small rich simulation's payments (``event_model(PAYMENT)``, the example repo's
schema) and the handbook's labels are produced to ``transactions`` / ``labels`` with
5 % of each held back up to 4 minutes (within the 5-minute lateness: out-of-order
payments and late labels force revisions, nothing is late). The worker, serving
the ``payments`` set from ``RTML_FEATURE_REPO`` on the generic streaming
computer, must publish for every payment a last ``features`` vector equal to the
batch engine's (``compute_features(PAYMENTS, ...)``, every one of the 32 features,
max abs diff <= 1e-9), with the payment's customer / terminal / amount, write the
``latest`` hash of every entity (compound ones included) with the batch values at
its newest payment, dead-letter two invalid payments naming the field and
quarantine a valid one dated 9999 (the event-time guard) and, restarted from its
checkpoint, send a copy of the first payment produced at the end to
``transactions.late``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_common.kafka.dead_letter import DeadLetter
from rtml_common.serde import dumps
from rtml_common.topics import dead_letter_topic
from rtml_feature_pipeline import kafka_engine
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.generic_parity import (
    PAYMENTS_REPO,
    Scheduled,
    batch_vectors,
    expected_latest,
    payments_set,
    produce,
    rich_data,
    schedule,
)
from rtml_feature_pipeline.generic_path import UnservableFeatureSet
from rtml_feature_pipeline.kafka_engine import build_worker
from rtml_feature_pipeline.parity import streamed_vectors
from rtml_features.online_store.redis.store import RedisOnlineStore
from rtml_localstack.crash import published_keys
from rtml_localstack.testing import consume

pytestmark = [pytest.mark.integration]


def test_a_generic_set_refuses_the_faust_engine_naming_the_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_FEATURE_REPO", str(PAYMENTS_REPO))
    kafka, redis_settings = KafkaSettings(), RedisSettings(url="redis://127.0.0.1:1/0")
    settings = Settings(feature_set="payments", online_layout="latest", engine="faust")
    with pytest.raises(UnservableFeatureSet, match="RTML_FEATURE_PIPELINE_ENGINE=kafka"):
        build_worker(settings, kafka, redis_settings, None)  # type: ignore[arg-type]


def invalid_payments(valid: dict[str, Any]) -> list[tuple[Scheduled, str]]:
    """Two payments the schema refuses, each with the field its dead letter must name."""
    at = valid["event_time"]
    bad_category = {**valid, "transaction_id": "bad-category", "merchant_category": "casino"}
    no_device = {k: v for k, v in valid.items() if k != "device_id"}
    no_device["transaction_id"] = "no-device"
    return [(Scheduled(at, "transactions", valid["customer_id"].encode(), dumps(event), []),
             field)
            for event, field in ((bad_category, "merchant_category"), (no_device, "device_id"))]


def test_payments_set_streamed_equals_batch_and_invalid_payments_are_dead_lettered(
        fresh_kafka_broker: Any, fresh_redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RTML_FEATURE_REPO", str(PAYMENTS_REPO))
    feature_set = payments_set()
    data = rich_data()
    events = data.events()
    invalid = invalid_payments(events[len(events) // 2])
    # Valid for the schema, implausible for the event-time guard: quarantined.
    middle = events[len(events) // 3]
    far = Scheduled(middle["event_time"], "transactions", middle["customer_id"].encode(),
                    dumps({**middle, "transaction_id": "far-future",
                           "event_time": datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)}), [])
    records = schedule(feature_set, data, extra=[*(record for record, _ in invalid), far])
    bootstrap = fresh_kafka_broker.bootstrap_servers
    kafka = KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=6000)
    produce(kafka, records)

    settings = Settings(feature_set="payments", online_layout="latest", allowed_lateness_s=300,
                        consumer_group="generic-parity")
    run = kafka_engine.run(settings, kafka, RedisSettings(url=fresh_redis_server.url),
                           max_idle_s=2, install_signal_handlers=False)
    assert run.events_applied == len(records) - len(invalid) - 1
    assert run.late_events == 0
    # A copy of the first payment, produced once everything was applied: the worker,
    # restarted from its checkpoint, sends it to transactions.late and changes nothing.
    first = events[0]
    late = Scheduled(first["event_time"], "transactions", first["customer_id"].encode(),
                     dumps({**first, "transaction_id": "late-copy"}), [])
    produce(kafka, [late])
    again = kafka_engine.run(settings, kafka, RedisSettings(url=fresh_redis_server.url),
                             max_idle_s=2, install_signal_handlers=False)
    assert again.resumed_from_checkpoint and again.late_events == 1
    assert again.vectors_published == 0
    assert run.revisions > 0  # out-of-order payments and late labels did revise vectors

    # Every payment's last vector == the batch engine's, every feature.
    streamed = streamed_vectors(bootstrap, run.vectors_published, feature_set=feature_set)
    batch = batch_vectors(feature_set, data)
    assert set(streamed.index) == set(batch.index)
    names = feature_set.names
    got = streamed.loc[batch.index, names].to_numpy(dtype=np.float64)
    want = batch[names].to_numpy(dtype=np.float64)
    diff = np.abs(got - want)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    assert diff.max() <= 1e-9, (batch.index[worst[0]], names[worst[1]], got[worst], want[worst])
    # Not vacuous: the generic aggregations and the label windows took varied values.
    for name in ("card_distinct_devices_1day", "card_device_age_s",
                 "terminal_id_risk_30day_window"):
        assert batch[name].nunique() > 2, name

    # The handbook-shaped fields of each vector: partition key, terminal, amount.
    shaped = published_keys(bootstrap, "features", lambda v: (
        v["transaction_id"], v["customer_id"], v["terminal_id"], v["amount"]))
    expected = {(e["transaction_id"], e["customer_id"], e.get("terminal_id"), e["amount"])
                for e in events}
    assert set(shaped) == expected

    # The latest hash of every entity, compound keys included, holds the batch values at
    # its newest payment.
    latest = expected_latest(feature_set, data, batch)
    store = RedisOnlineStore(fresh_redis_server.url, ttl_s=3600)
    keys = list(latest)
    assert {entity for entity, _ in keys} >= {"customer", "card_device", "device", "ip"}
    for (entity, entity_id), entry in zip(keys, store.read(feature_set, keys), strict=True):
        assert entry is not None, (entity, entity_id)
        for name, value in latest[(entity, entity_id)].items():
            assert abs(entry.values[name] - value) <= 1e-9, (entity, entity_id, name)

    # Each invalid payment dead-lettered, as it was read, naming its field.
    topic = dead_letter_topic("transactions")
    letters = [DeadLetter.from_parts(topic, r.key, r.value, r.headers)
               for r in consume(bootstrap, topic, len(invalid) + 1)]
    by_value = {letter.value: letter for letter in letters}
    for record, field in invalid:
        letter = by_value[record.value]
        assert field in letter.reason, letter.reason
        assert letter.error_type == "DecodeError"
    [sent_late] = consume(bootstrap, "transactions.late", 1)
    assert sent_late.value == late.value
    assert any(key == "rtml-late-reason" and b"behind the watermark" in (value or b"")
               for key, value in sent_late.headers)
    quarantined = by_value[far.value]
    assert quarantined.error_type == "ImplausibleEventTime"
    assert "ahead of the wall clock" in quarantined.reason, quarantined.reason
