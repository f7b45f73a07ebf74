"""Issue #17, finding 3: valid-looking but huge amounts must not poison a customer.

Three transactions of ``"amount": 1e308`` used to be applied: the customer's
window sums became ``inf``, the pipeline wrote ``inf`` means to Redis and every
later vector of the customer was refused by the scorer. Now the contract bounds
amounts (``RTML_CONTRACT_MAX_AMOUNT``) and is strict about types, so such records
are dead-lettered with their reason when they are decoded, and the customer's
later transactions get finite, correct features — in Redis and on ``features``.

Against a real broker and Redis (the ``rtml_localstack`` fixtures). A second
test hands the worker a transaction that bypassed the decoders (as another
engine or a bug could): the computer refuses it before touching any state and
the worker dead-letters it.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_common.events import MAX_AMOUNT, FeatureVector, Transaction
from rtml_common.kafka.admin import ensure_topics
from rtml_common.kafka.consumer import Record
from rtml_common.kafka.dead_letter import DeadLetter
from rtml_common.kafka.producer import EventProducer
from rtml_common.serde import decode, headers_for
from rtml_common.topics import dead_letter_topic, spec_for_event
from rtml_feature_pipeline import kafka_engine
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.inputs import TransactionInput, decode_transaction_input
from rtml_feature_pipeline.kafka_engine import build_worker
from rtml_feature_pipeline.worker import FeatureWorker
from rtml_features.baseline import BASELINE
from rtml_features.online_store.redis.prefix_reader import PrefixLogReader
from rtml_features.request_vector import RequestVectors
from rtml_features.rows import epoch_ms
from rtml_localstack.testing import consume

pytestmark = pytest.mark.integration

TRANSACTIONS = spec_for_event(Transaction).name
FEATURES = spec_for_event(FeatureVector).name
START = datetime(2018, 4, 1, 8, tzinfo=UTC)
CUSTOMER = "c-hostile"
PREFIX = f"rtml:fs:{BASELINE.name}:{BASELINE.version}:"


def tx(tid: str, minute: int, amount: Any, customer: str = CUSTOMER,
       event_time: Any = None) -> bytes:
    """A transaction record; ``amount`` / ``event_time`` as given (raw JSON when bytes)."""
    stamp = event_time if event_time is not None else (
        START + timedelta(minutes=minute)).isoformat()
    fields = {"transaction_id": tid, "event_time": stamp, "customer_id": customer,
              "terminal_id": f"t-{customer}", "amount": "AMOUNT"}
    text = json.dumps(fields).encode()
    literal = amount if isinstance(amount, bytes) else json.dumps(amount).encode()
    return text.replace(b'"AMOUNT"', literal)


#: (record, the reason its dead letter must give): each one passes for a number or a
#: time with a lax reader, and each used to be applied.
HOSTILE = [
    *((tx(f"huge-{i}", 10 + i, 1e308), "amount: Input should be less than or equal to "
                                       f"{MAX_AMOUNT:.0f}") for i in range(3)),
    (tx("inf-literal", 14, b"1e309"), "amount: Input should be a finite number"),
    (tx("just-above", 15, math.nextafter(MAX_AMOUNT, math.inf)),
     "amount: Input should be less than or equal to"),
    (tx("numeric-string", 16, "12.5"), "amount: Input should be a valid number"),
    (tx("bool", 17, True), "amount: Input should be a valid number"),
    (tx("unix-int", 18, 5.0, event_time=1522570680),
     "event_time: Input should be an RFC 3339 date-time string"),
    (tx("unix-float", 19, 5.0, event_time=1522570740.5),
     "event_time: Input should be an RFC 3339 date-time string"),
]
VALID_BEFORE = [(f"ok-{i}", i, 10.0 + i) for i in range(5)]
VALID_AFTER = [(f"ok-{i}", 20 + i, 20.0 + i) for i in range(5, 10)]
#: Another customer at exactly the maximum, three times: valid, and its sums finite.
AT_MAXIMUM = [(f"max-{i}", 30 + i, MAX_AMOUNT) for i in range(3)]


def run_worker(kafka: KafkaSettings, redis_url: str) -> tuple[kafka_engine.EngineRun,
                                                               FeatureWorker]:
    workers: list[FeatureWorker] = []
    # The hashes too: their values, as-of and transaction are checked below.
    settings = Settings(consumer_group="hostile-amounts", checkpoint_interval_s=3600,
                        online_layout="prefix+latest")
    result = kafka_engine.run(settings, kafka, RedisSettings(url=redis_url), max_idle_s=3,
                              install_signal_handlers=False, on_worker=workers.append)
    return result, workers[0]


def stored(client: Any, entity: str, entity_id: str) -> dict[str, str]:
    found = client.hgetall(f"{PREFIX}{entity}:{entity_id}")
    return {k.decode(): v.decode() for k, v in found.items()}


def test_huge_and_mistyped_amounts_are_dead_lettered_and_the_customer_stays_healthy(
        fresh_kafka_broker: Any, fresh_redis_server: Any) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    kafka = KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=6000)
    ensure_topics(bootstrap, replication_factor=1)
    producer = EventProducer(kafka)
    headers = headers_for(Transaction)
    for tid, minute, amount in VALID_BEFORE:
        producer.send_raw(TRANSACTIONS, CUSTOMER.encode(), tx(tid, minute, amount), headers)
    for value, _ in HOSTILE:
        producer.send_raw(TRANSACTIONS, CUSTOMER.encode(), value, headers)
    for tid, minute, amount in VALID_AFTER:
        producer.send_raw(TRANSACTIONS, CUSTOMER.encode(), tx(tid, minute, amount), headers)
    for tid, minute, amount in AT_MAXIMUM:
        producer.send_raw(TRANSACTIONS, b"c-max", tx(tid, minute, amount, "c-max"), headers)
    producer.flush()

    result, worker = run_worker(kafka, fresh_redis_server.url)
    valid = VALID_BEFORE + VALID_AFTER
    assert worker.events_applied == len(valid) + len(AT_MAXIMUM)
    assert result.late_events == 0

    # Every hostile record in the dead-letter topic, byte for byte, with its reason.
    letters = [DeadLetter.from_parts(dead_letter_topic(TRANSACTIONS), r.key, r.value, r.headers)
               for r in consume(bootstrap, dead_letter_topic(TRANSACTIONS), len(HOSTILE))]
    by_value = {letter.value: letter for letter in letters}
    for value, reason in HOSTILE:
        letter = by_value[value]
        assert reason in letter.reason, (letter.reason, reason)
        assert letter.error_type == "DecodeError" and letter.source_topic == TRANSACTIONS

    # Redis: the customer's and its terminal's values are finite and those of the valid
    # transactions alone (all ten within the 1-day window).
    client = fresh_redis_server.client()
    amounts = [amount for _, _, amount in valid]
    customer = stored(client, "customer", CUSTOMER)
    assert customer["_tx"] == VALID_AFTER[-1][0]
    assert int(customer["_as_of_ms"]) == epoch_ms(START + timedelta(minutes=VALID_AFTER[-1][1]))
    assert float(customer["customer_id_nb_tx_1day_window"]) == len(valid)
    assert float(customer["customer_id_avg_amount_1day_window"]) == pytest.approx(
        sum(amounts) / len(amounts), rel=1e-12)
    for entity, entity_id in (("customer", CUSTOMER), ("terminal", f"t-{CUSTOMER}"),
                              ("customer", "c-max"), ("terminal", "t-c-max")):
        values = stored(client, entity, entity_id)
        assert values, (entity, entity_id)
        assert all(math.isfinite(float(v)) for k, v in values.items() if not k.startswith("_"))
    assert float(stored(client, "customer", "c-max")["customer_id_avg_amount_1day_window"]) \
        == MAX_AMOUNT
    # The prefix logs hold the valid transactions alone: a request at the last one's time,
    # read as the decision API reads it, sees them and only them.
    last_tid, last_minute, last_amount = VALID_AFTER[-1]
    last_ms = epoch_ms(START + timedelta(minutes=last_minute))
    logs = PrefixLogReader(client, BASELINE).read(
        last_tid, last_ms, {"customer_id": CUSTOMER, "terminal_id": f"t-{CUSTOMER}"})
    served = RequestVectors(BASELINE).compute(last_tid, last_ms, {"amount": last_amount}, logs)
    assert served["customer_id_nb_tx_1day_window"] == len(valid)
    assert served["customer_id_avg_amount_1day_window"] == pytest.approx(
        sum(amounts) / len(amounts), rel=1e-12)
    assert all(math.isfinite(value) for value in served.values())

    # features: one vector per valid transaction, every value finite, each one a valid
    # FeatureVector (what the scorer reads); none for a refused record.
    published = consume(bootstrap, FEATURES, worker.vectors_published)
    vectors = [decode(record.value, FeatureVector) for record in published]
    mine = {v.transaction_id for v in vectors if v.customer_id == CUSTOMER}
    assert mine == {tid for tid, _, _ in valid}
    assert all(math.isfinite(x) for v in vectors for x in v.features.values())
    last = max((v for v in vectors if v.transaction_id == VALID_AFTER[-1][0]),
               key=lambda v: v.revision)
    assert last.features["customer_id_avg_amount_1day_window"] == pytest.approx(
        sum(amounts) / len(amounts), rel=1e-12)


def test_an_amount_that_bypassed_the_decoders_is_refused_before_touching_state(
        fresh_kafka_broker: Any, redis_server: Any) -> None:
    """Another engine, or a bug, hands the worker 1e308: dead-lettered, state untouched."""
    bootstrap = fresh_kafka_broker.bootstrap_servers
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    ensure_topics(bootstrap, replication_factor=1)
    producer = EventProducer(kafka)
    worker = build_worker(Settings(consumer_group="bypass"), kafka,
                          RedisSettings(url=redis_server.url), producer)
    worker.checkpoints = None
    headers = headers_for(Transaction)
    good = tx("bypass-ok", 0, 12.5, "c-bypass")
    poisoned = tx("bypass-huge", 1, 1e308, "c-bypass")
    sneaked = TransactionInput("bypass-huge", "c-bypass", "t-c-bypass",
                               epoch_ms(START + timedelta(minutes=1)), 1e308, poisoned)
    worker.handle([Record(TRANSACTIONS, 0, 0, b"c-bypass",
                          decode_transaction_input(good, headers), headers, 1),
                   Record(TRANSACTIONS, 0, 1, b"c-bypass", sneaked, headers, 2)])
    producer.flush()

    assert worker.quarantined == 1 and worker.events_applied == 1
    assert worker.offsets[(TRANSACTIONS, 0)] == 2  # covered: not sent again after a restart
    state = worker.computer.states[("customer", "c-bypass")]
    assert list(state.amounts) == [12.5] and state.tids == ["bypass-ok"]
    (record,) = consume(bootstrap, dead_letter_topic(TRANSACTIONS), 1)
    letter = DeadLetter.from_parts(dead_letter_topic(TRANSACTIONS), record.key, record.value,
                                   record.headers)
    assert letter.value == poisoned
    assert letter.error_type == "InvalidAmount"
    assert "amount 1e+308 is not a finite number" in letter.reason
    assert worker.vectors_published == 1
