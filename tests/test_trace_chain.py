"""One trace from an HTTP request to its prediction, across two Kafka hops.

A client POSTs a transaction to the decision API (in-process, TestClient)
with a W3C ``traceparent``; the decision is published with its context on
``transactions``; the feature pipeline's Kafka engine (in-process, real
Redis) turns it into a ``features`` record; the scorer (in-process, a model
registered in the real MLflow) publishes the ``predictions`` record. Every
service's spans go to one in-memory exporter, and the test checks they form
the chain client → [FastAPI's server span, if the API keeps it on] →
``decide`` → ``features`` → ``score``, all in the client's trace, and that
the prediction record carries the ``score`` span's context.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import xgboost as xgb
from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from rtml_common.config import KafkaSettings, MlflowSettings, RedisSettings
from rtml_common.serde import header_value
from rtml_common.tracing import TRACEPARENT
from rtml_decision.config import Settings as DecisionSettings
from rtml_decision.wiring import build_service
from rtml_feature_pipeline import kafka_engine
from rtml_feature_pipeline.config import Settings as FeatureSettings
from rtml_features.baseline import BASELINE
from rtml_localstack.testing import TEST_SESSION_TIMEOUT_MS, KafkaBroker, in_memory_spans
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.xgboost import XGBoostModel
from rtml_scorer import service as scorer_service
from rtml_scorer.config import Settings as ScorerSettings
from rtml_scorer.scorer import Scorer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CLIENT_TRACE = uuid.uuid4().hex
CLIENT_SPAN = uuid.uuid4().hex[:16]


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return in_memory_spans()


def small_model() -> XGBoostModel:
    rng = np.random.default_rng(0)
    rows = rng.random((300, len(BASELINE.names))) * 10
    labels = (rows[:, 0] > 5).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                        xgb.DMatrix(rows, label=labels, feature_names=list(BASELINE.names)), 5)
    return XGBoostModel(booster)


def find_record(bootstrap: str, topic: str, transaction_id: str,
                timeout_s: float = 60.0) -> Any:
    """The first record of ``topic`` whose value names ``transaction_id``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in consumer.consume(100, 0.3):
                if message.error() is None and message.value() and orjson.loads(
                        message.value()).get("transaction_id") == transaction_id:
                    return message
        raise TimeoutError(f"no {topic} record for {transaction_id}")
    finally:
        consumer.close()


def test_one_trace_from_the_http_request_to_the_prediction(
        spans: InMemorySpanExporter, kafka_broker_factory: Callable[..., KafkaBroker],
        redis_server: Any, mlflow_server: Any, tmp_path: Path) -> None:
    broker = kafka_broker_factory(create_topics=True)
    bootstrap = broker.bootstrap_servers
    kafka = KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=TEST_SESSION_TIMEOUT_MS,
                          idempotent_producer=False, commit_interval_s=0.2, poll_timeout_s=0.2)
    mlflow = MlflowSettings(tracking_uri=mlflow_server.tracking_uri)
    model_name = f"trace-{uuid.uuid4().hex[:8]}"
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    version = registry.register(model_name, small_model(), feature_set=BASELINE).version
    registry.set_alias(model_name, "champion", version)

    # The scorer first: it waits for the features record.
    stop = threading.Event()
    ready = threading.Event()
    scorers: list[Scorer] = []

    def on_scorer(scorer: Scorer) -> None:
        scorers.append(scorer)
        ready.set()

    scorer_thread = threading.Thread(target=scorer_service.run, daemon=True, kwargs={
        "settings": ScorerSettings(model_name=model_name, consumer_group=f"g-{model_name}"),
        "kafka": kafka, "mlflow": mlflow, "install_signal_handlers": False,
        "workdir": tmp_path / "serving", "stop": stop, "on_scorer": on_scorer})
    scorer_thread.start()
    try:
        assert ready.wait(60), "scorer did not start"

        # 1. the HTTP request, in the client's trace
        transaction_id = uuid.uuid4().hex
        body = {"transaction_id": transaction_id, "event_time": datetime.now(UTC).isoformat(),
                "customer_id": "c-trace", "terminal_id": "t-trace", "amount": 12.5}
        decision = build_service(DecisionSettings(model_name=model_name), kafka,
                                 RedisSettings(url=redis_server.url), mlflow, None,
                                 watch_models=False)
        with TestClient(decision.app()) as client:
            response = client.post("/v1/decisions", json=body, headers={
                "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
        assert response.status_code == 200, response.text

        # 2. the feature pipeline drains ``transactions`` and stops
        run = kafka_engine.run(FeatureSettings(consumer_group=f"f-{model_name}"), kafka,
                               RedisSettings(url=redis_server.url), max_idle_s=2,
                               install_signal_handlers=False)
        assert run.vectors_published >= 1

        # 3. the scorer's prediction
        prediction = find_record(bootstrap, "predictions", transaction_id)
    finally:
        stop.set()
        scorer_thread.join(60)

    mine = {s.context.span_id: s for s in spans.get_finished_spans()
            if f"{s.context.trace_id:032x}" == CLIENT_TRACE}
    (score,) = [s for s in mine.values() if s.name == "score"]
    # Walk up from the prediction's span to the client's.
    chain: list[ReadableSpan] = [score]
    while chain[-1].parent is not None and chain[-1].parent.span_id in mine:
        chain.append(mine[chain[-1].parent.span_id])
    names = [s.name for s in reversed(chain)]
    # FastAPI's own server span sits between the client and ``decide`` when the
    # decision API leaves FastAPI's tracing on; otherwise ``decide`` is the client's child.
    assert names in (["decide", "features", "score"], ["POST /v1/decisions", "decide",
                                                       "features", "score"]), names
    root = chain[-1]
    assert root.parent is not None and f"{root.parent.span_id:016x}" == CLIENT_SPAN
    assert root.parent.is_remote
    features = chain[1]
    assert features.kind is SpanKind.CONSUMER and score.kind is SpanKind.CONSUMER
    assert features.attributes is not None and score.attributes is not None
    assert features.attributes["messaging.destination.name"] == "transactions"
    assert score.attributes["messaging.destination.name"] == "features"
    assert score.attributes["rtml.model.version"] == version

    traceparent = header_value(prediction.headers(), TRACEPARENT)
    assert traceparent == f"00-{CLIENT_TRACE}-{score.context.span_id:016x}-01".encode()
