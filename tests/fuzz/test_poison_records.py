"""Poison records: malformed and mutated records among valid ones, while the services run.

The feature pipeline and the scorer run as deployed (``python -m``, configured
by their environment) on a broker of this test's own. A seeded generator
produces ``RTML_FUZZ_RECORDS`` bad records (default 10,000) — random bytes,
truncated JSON, wrong types, missing fields, invalid UTF-8, huge values,
wrong ``rtml-schema-version`` headers, records at and near the default
producer's size limit — interleaved with valid transactions, labels and
feature vectors into ``transactions``, ``labels`` and ``features``. Then:

* every bad record is in its topic's ``.dlq`` (found by its source topic,
  partition and offset) with a non-empty ``rtml-dlq-reason``;
* no valid record is dead-lettered;
* every valid transaction got a feature vector, and every valid vector
  (the pipeline's and the ones produced directly) got a prediction;
* neither process exited while this happened (no crash, no restart), and
  both stop cleanly (exit 0) on SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import xgboost as xgb
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from rtml_common.events import FeatureVector, Label, Transaction
from rtml_common.kafka.dead_letter import REASON, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC
from rtml_common.serde import SCHEMA_VERSION_HEADER, encode, headers_for
from rtml_features.baseline import BASELINE
from rtml_localstack.crash import ServiceProcess, wait_until
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.xgboost import XGBoostModel

#: Longest wait for the services to handle everything (10,000 records take ~30 s on 2 cores).
SETTLE_S = max(150.0, int(os.environ.get("RTML_FUZZ_RECORDS", "10000")) / 100)
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_environment"),
              pytest.mark.timeout(int(SETTLE_S) + 450)]

TRANSACTIONS, LABELS, FEATURES = "transactions", "labels", "features"
#: What a default producer accepts for one record (librdkafka ``message.max.bytes``).
PRODUCER_LIMIT = 1_000_000
#: Its per-record framing at worst (see rtml_common.kafka.dead_letter).
RECORD_OVERHEAD = 36
Headers = list[tuple[str, bytes]]
Coordinates = tuple[str, int, int]


@dataclass
class Produced:
    """One record to produce, and what it is."""

    topic: str
    key: bytes
    value: bytes
    headers: Headers
    kind: str  # "valid" or the mutation's name
    transaction_id: str | None = None


@dataclass
class Plan:
    """The whole interleaved stream and what each record is expected to cause."""

    records: list[Produced] = field(default_factory=list)

    def bad(self) -> list[Produced]:
        return [r for r in self.records if r.kind != "valid"]


class PoisonGenerator:
    """Seeded: the same seed, size and start give the same records, byte for byte, and the
    mutations chosen do not depend on the start (every timestamp has the same length)."""

    def __init__(self, seed: int, run: str, start: datetime) -> None:
        self.rng = random.Random(seed)
        self.run = run
        self.start = start
        self.count = 0

    # -- valid records ------------------------------------------------------------

    def transaction(self) -> tuple[dict[str, Any], Produced]:
        self.count += 1
        i = self.count
        body = {"transaction_id": f"{self.run}-tx-{i}", "customer_id": f"{self.run}-c{i % 50}",
                "terminal_id": f"{self.run}-t{i % 30}",
                "event_time": (self.start + timedelta(milliseconds=50 * i)).isoformat(),
                "amount": round(self.rng.uniform(1, 500), 2)}
        event = Transaction(**body)
        return body, Produced(TRANSACTIONS, body["customer_id"].encode(), encode(event),
                              list(headers_for(Transaction)), "valid", body["transaction_id"])

    def label(self, tx: dict[str, Any]) -> tuple[dict[str, Any], Produced]:
        at = datetime.fromisoformat(tx["event_time"])
        body = {"transaction_id": tx["transaction_id"], "customer_id": tx["customer_id"],
                "terminal_id": tx["terminal_id"], "transaction_time": at.isoformat(),
                "labeled_at": (at + timedelta(seconds=30)).isoformat(),
                "is_fraud": self.rng.random() < 0.1}
        return body, Produced(LABELS, body["customer_id"].encode(), encode(Label(**body)),
                              list(headers_for(Label)), "valid")

    def vector(self) -> tuple[dict[str, Any], Produced]:
        self.count += 1
        i = self.count
        features = {name: float(self.rng.randint(0, 50)) for name in BASELINE.names}
        event = FeatureVector(
            transaction_id=f"{self.run}-direct-{i}", customer_id=f"{self.run}-c{i % 50}",
            event_time=self.start + timedelta(milliseconds=50 * i), amount=10.0,
            feature_set=BASELINE.name, feature_set_version=BASELINE.version,
            features=features, revision=0,
            computed_at=self.start + timedelta(milliseconds=50 * i + 10))
        body = orjson.loads(encode(event))
        return body, Produced(FEATURES, event.customer_id.encode(), encode(event),
                              list(headers_for(FeatureVector)), "valid", event.transaction_id)

    # -- mutations of a valid record ---------------------------------------------

    def mutate(self, topic: str, body: dict[str, Any], headers: Headers) -> Produced:
        name, mutation = self.rng.choice(MUTATIONS)
        key, value, new_headers = mutation(self, body, headers)
        return Produced(topic, key, value, new_headers, name)

    def at_limit(self, topic: str, headers: Headers, margin: int) -> Produced:
        """An invalid value as large as a default producer allows (less ``margin``)."""
        key = b"c-limit"
        size = PRODUCER_LIMIT - RECORD_OVERHEAD - len(key) - margin
        value = (b'{"transaction_id": "' + b"x" * size)[:size]  # unterminated: invalid
        return Produced(topic, key, value, [], f"size limit - {margin}")


def _random_bytes(g: PoisonGenerator, body: dict[str, Any], headers: Headers
                  ) -> tuple[bytes, bytes, Headers]:
    return b"k", g.rng.randbytes(g.rng.randint(1, 300)), headers


def _truncated(g: PoisonGenerator, body: dict[str, Any], headers: Headers
               ) -> tuple[bytes, bytes, Headers]:
    raw = json.dumps(body).encode()
    return b"k", raw[:g.rng.randint(1, len(raw) - 1)], headers


_WRONG_VALUES: list[Any] = [None, True, 5, -1.5, "text", "", [], {}, [1, 2], {"a": 1},
                            "2018-13-45T99:00:00Z", 10**30]


def _wrong_type(g: PoisonGenerator, body: dict[str, Any], headers: Headers
                ) -> tuple[bytes, bytes, Headers]:
    changed = dict(body)
    name = g.rng.choice(sorted(changed))
    current = changed[name]
    choices = [v for v in _WRONG_VALUES if type(v) is not type(current)
               and not (v is None and name == "terminal_id")  # optional on labels
               and not (isinstance(current, float) and type(v) in (int, float))]
    if current is None:  # an optional id left out: a string would be a valid one
        choices = [v for v in choices if v is not None and not isinstance(v, str)]
    if name == "features":
        choices = [None, "x", [], {BASELINE.names[0]: "high"}, {BASELINE.names[0]: None}]
    changed[name] = g.rng.choice(choices)
    return b"k", json.dumps(changed).encode(), headers


def _missing_field(g: PoisonGenerator, body: dict[str, Any], headers: Headers
                   ) -> tuple[bytes, bytes, Headers]:
    event_type = EVENT_TYPES[_topic_of(body)]
    required = [n for n in sorted(body) if event_type.model_fields[n].is_required()]
    changed = dict(body)
    del changed[g.rng.choice(required)]
    return b"k", json.dumps(changed).encode(), headers


def _invalid_utf8(g: PoisonGenerator, body: dict[str, Any], headers: Headers
                  ) -> tuple[bytes, bytes, Headers]:
    raw = json.dumps(body).encode()
    cut = raw.index(b'"', raw.index(b":") + 1) + 1  # inside the first string value
    return b"k", raw[:cut] + g.rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80",
                                          b"\xf8\x88\x80\x80\x80"]) + raw[cut:], headers


def _huge_value(g: PoisonGenerator, body: dict[str, Any], headers: Headers
                ) -> tuple[bytes, bytes, Headers]:
    raw = json.dumps(body)
    if "amount" in body and g.rng.random() < 0.6:
        huge = g.rng.choice(["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1e308",
                             "-5", "1" + "0" * 5000])
        raw = raw.replace(json.dumps(body["amount"]), huge, 1)
        return b"k", raw.encode(), headers
    if "features" in body:
        name = g.rng.choice(BASELINE.names)
        changed = json.loads(raw)
        changed["features"][name] = g.rng.choice(["NaN", "Infinity"])
        text = json.dumps(changed).replace(f'"{changed["features"][name]}"',
                                           changed["features"][name], 1)
        return b"k", text.encode(), headers
    changed = dict(body)
    # Ids are at most 128 characters; one in eleven is 100 KB.
    changed[g.rng.choice(sorted(changed))] = "z" * g.rng.choice([129, 4096] * 5 + [100_000])
    return b"k", json.dumps(changed).encode(), headers


def _schema_version(g: PoisonGenerator, body: dict[str, Any], headers: Headers
                    ) -> tuple[bytes, bytes, Headers]:
    changed = [(k, v) for k, v in headers if k != SCHEMA_VERSION_HEADER]
    changed.append((SCHEMA_VERSION_HEADER, g.rng.choice([b"99", b"0", b"abc", b"", b"\xff"])))
    return b"k", json.dumps(body).encode(), changed


def _not_an_object(g: PoisonGenerator, body: dict[str, Any], headers: Headers
                   ) -> tuple[bytes, bytes, Headers]:
    return b"k", g.rng.choice([b"null", b"[]", b'"text"', b"42", b"true", b"{}",
                               b"[" * 3000 + b"]" * 3000, b""]), headers


EVENT_TYPES: dict[str, type[Any]] = {TRANSACTIONS: Transaction, LABELS: Label,
                                     FEATURES: FeatureVector}


def _topic_of(body: dict[str, Any]) -> str:
    return FEATURES if "features" in body else LABELS if "is_fraud" in body else TRANSACTIONS


Mutation = Callable[[PoisonGenerator, dict[str, Any], Headers], tuple[bytes, bytes, Headers]]
MUTATIONS: list[tuple[str, Mutation]] = [
    ("random bytes", _random_bytes), ("truncated JSON", _truncated),
    ("wrong type", _wrong_type), ("missing field", _missing_field),
    ("invalid UTF-8", _invalid_utf8), ("huge value", _huge_value),
    ("wrong schema version", _schema_version), ("not an object", _not_an_object),
]


def build_plan(seed: int, bad_records: int, run: str, start: datetime) -> Plan:
    """``bad_records`` mutations, one valid record every ~4 bad ones, all three topics."""
    g = PoisonGenerator(seed, run, start)
    plan = Plan()
    valid = 0
    for topic in (TRANSACTIONS, LABELS, FEATURES):  # at and just under the size limit
        for margin in (0, 500):
            plan.records.append(g.at_limit(topic, [], margin))
    while len(plan.records) - valid < bad_records:
        tx, produced = g.transaction()
        plan.records.append(produced)
        label, labelled = g.label(tx)
        valid += 1
        if g.rng.random() < 0.3:
            plan.records.append(labelled)
            valid += 1
        vector, direct = g.vector()
        if g.rng.random() < 0.2:
            plan.records.append(direct)
            valid += 1
        for topic, body, headers in ((TRANSACTIONS, tx, produced.headers),
                                     (LABELS, label, labelled.headers),
                                     (FEATURES, vector, direct.headers)):
            plan.records.append(g.mutate(topic, body, headers))
    return plan


def produce(bootstrap: str, plan: Plan) -> dict[Coordinates, Produced]:
    """Produce in order; returns each record by where it landed."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "enable.idempotence": False})
    landed: dict[Coordinates, Produced] = {}
    errors: list[str] = []

    def delivered(record: Produced) -> Callable[[Any, Any], None]:
        def report(error: Any, message: Any) -> None:
            if error is not None:
                errors.append(f"{record.kind} on {record.topic}: {error}")
            else:
                landed[(message.topic(), message.partition(), message.offset())] = record
        return report

    for record in plan.records:
        while True:
            try:
                producer.produce(record.topic, record.value, record.key,
                                 headers=record.headers, on_delivery=delivered(record))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not errors, errors[:5]
    assert len(landed) == len(plan.records), (
        f"{len(plan.records)} records produced, {len(landed)} distinct positions acknowledged")
    return landed


class Tail:
    """Everything written to some topics so far, read incrementally from their beginning."""

    def __init__(self, bootstrap: str, topics: list[str],
                 parse: Callable[[Any], Any]) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap,
                                  "group.id": f"fuzz-tail-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False})
        self.topics = topics
        self.assigned: set[tuple[str, int]] = set()
        self.parse = parse
        self.found: dict[Any, Any] = {}

    def _assign_new(self) -> None:
        """Follow partitions as they appear (a dead-letter topic exists from its first letter)."""
        new: list[TopicPartition] = []
        for topic in self.topics:
            metadata = self.consumer.list_topics(topic, timeout=10).topics.get(topic)
            if metadata is None or metadata.error is not None:
                continue
            new += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions
                    if (topic, p) not in self.assigned]
        if new:
            self.consumer.incremental_assign(new)
            self.assigned |= {(tp.topic, tp.partition) for tp in new}

    def read(self, seconds: float) -> dict[Any, Any]:
        """Read what arrived, for at most ``seconds``; returns everything parsed so far."""
        self._assign_new()
        deadline = time.monotonic() + seconds
        while self.assigned and time.monotonic() < deadline:
            messages = self.consumer.consume(2000, 0.2)
            if not messages:
                break
            for message in messages:
                if message.error() is None:
                    parsed = self.parse(message)
                    if parsed is not None:
                        self.found[parsed[0]] = parsed[1]
        return self.found

    def close(self) -> None:
        self.consumer.close()


def dead_letter_of(message: Any) -> tuple[Coordinates, str] | None:
    """Source coordinates and reason of a dead letter."""
    headers = {k: (v or b"").decode(errors="replace") for k, v in message.headers() or []}
    if SOURCE_TOPIC not in headers:
        return None
    return ((headers[SOURCE_TOPIC], int(headers[SOURCE_PARTITION]),
             int(headers[SOURCE_OFFSET])), headers.get(REASON, ""))


def transaction_of(message: Any) -> tuple[str, bool] | None:
    """The transaction id of a record (the topic holds the poison records too: None for those)."""
    try:
        tid = orjson.loads(message.value())["transaction_id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return (tid, True) if isinstance(tid, str) else None


def notable(service: ServiceProcess, chars: int = 4000) -> str:
    """The end of a service's log without its one line per dead letter."""
    lines = [line for line in service.log().splitlines() if "dead-lettered" not in line]
    return "\n".join(lines)[-chars:]


def register_champion(tracking_uri: str, name: str) -> None:
    registry = MlflowRegistry(tracking_uri)
    rows = np.random.default_rng(0).random((300, len(BASELINE.names))) * 20
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1, "max_depth": 3},
                        xgb.DMatrix(rows, label=rows[:, 0] > 10,
                                    feature_names=list(BASELINE.names)), 5)
    version = registry.register(name, XGBoostModel(booster), feature_set=BASELINE)
    registry.set_alias(name, "champion", version.version)


def test_poison_records_are_dead_lettered_and_valid_ones_processed(
        budget: Any, fresh_kafka_broker: Any, fresh_redis_server: Any, mlflow_server: Any,
        tmp_path: Path) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    run = f"poison-{uuid.uuid4().hex[:6]}"
    model = f"fuzz-poison-{uuid.uuid4().hex[:8]}"
    register_champion(mlflow_server.tracking_uri, model)
    # Recent (the event-time guards judge times against the wall clock); a fraction of
    # 123 µs keeps every timestamp's text the same length whatever the start.
    start = datetime.now(UTC).replace(microsecond=123) - timedelta(hours=1)
    plan = build_plan(budget.seed, budget.records, run, start)
    common = {"RTML_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "RTML_KAFKA_SESSION_TIMEOUT_MS": "6000",
              "RTML_KAFKA_IDEMPOTENT_PRODUCER": "false"}
    pipeline = ServiceProcess("rtml_feature_pipeline", {
        **common, "RTML_REDIS_URL": fresh_redis_server.url,
        "RTML_FEATURE_PIPELINE_CONSUMER_GROUP": f"fp-{run}"}, tmp_path / "logs")
    scorer = ServiceProcess("rtml_scorer", {
        **common, "RTML_MLFLOW_TRACKING_URI": mlflow_server.tracking_uri,
        "RTML_SCORER_MODEL_NAME": model, "RTML_SCORER_CONSUMER_GROUP": f"sc-{run}"},
        tmp_path / "logs")
    tails = {"dlq": Tail(bootstrap, [f"{t}.dlq" for t in (TRANSACTIONS, LABELS, FEATURES)],
                         dead_letter_of),
             "vectors": Tail(bootstrap, [FEATURES], transaction_of),
             "predictions": Tail(bootstrap, ["predictions"], transaction_of)}
    try:
        pipeline.start()
        scorer.start()
        landed = produce(bootstrap, plan)
        bad = {where: record for where, record in landed.items() if record.kind != "valid"}
        valid_tx = {r.transaction_id for r in plan.records
                    if r.kind == "valid" and r.topic == TRANSACTIONS}
        direct = {r.transaction_id for r in plan.records
                  if r.kind == "valid" and r.topic == FEATURES}
        assert len(bad) >= budget.records

        def settled() -> bool:
            return (set(bad) <= set(tails["dlq"].read(2))
                    and valid_tx <= set(tails["vectors"].read(2))
                    and valid_tx | direct <= set(tails["predictions"].read(2)))

        # On a timeout the assertions below say precisely what is missing.
        with contextlib.suppress(TimeoutError):
            wait_until(settled, SETTLE_S, "every bad record dead-lettered and every valid one "
                       "processed", watch=(pipeline, scorer), interval_s=0.5)
        letters: dict[Coordinates, str] = tails["dlq"].read(5)
        vectors = set(tails["vectors"].read(5))
        predictions = set(tails["predictions"].read(5))
        alive = {"feature pipeline": pipeline.alive, "scorer": scorer.alive}
    finally:
        codes = {"feature pipeline": pipeline.stop(), "scorer": scorer.stop()}
        for tail in tails.values():
            tail.close()

    missing = {where: record.kind for where, record in bad.items() if where not in letters}
    kinds: dict[str, int] = {}
    for where, kind in missing.items():
        kinds[f"{where[0]}: {kind}"] = kinds.get(f"{where[0]}: {kind}", 0) + 1
    wrongly = [where for where, record in landed.items()
               if record.kind == "valid" and where in letters]
    reasonless = [where for where in bad if letters.get(where) == ""]
    print(f"poison: {len(bad)} bad + {len(landed) - len(bad)} valid records; "
          f"{len(bad) - len(missing)} dead-lettered; missing by kind: {kinds}; "
          f"valid dead-lettered: {len(wrongly)}; vectors missing: {len(valid_tx - vectors)}; "
          f"predictions missing: {len((valid_tx | direct) - predictions)}; alive: {alive}; "
          f"exit codes: {codes}")
    logs = f"feature pipeline:\n{notable(pipeline)}\nscorer:\n{notable(scorer)}"
    print(logs)
    assert alive == {"feature pipeline": True, "scorer": True}, logs
    assert codes == {"feature pipeline": 0, "scorer": 0}, logs
    assert not missing, f"bad records not dead-lettered, by topic and kind: {kinds}"
    assert not reasonless, f"{len(reasonless)} dead letters without a reason"
    assert not wrongly, f"{len(wrongly)} valid records dead-lettered: {wrongly[:5]}"
    assert valid_tx <= vectors, f"{len(valid_tx - vectors)} valid transactions without a vector"
    assert valid_tx | direct <= predictions, (
        f"{len((valid_tx | direct) - predictions)} vectors without a prediction")
