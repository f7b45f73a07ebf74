"""Issue #17, finding 3, end to end: huge amounts no longer stop a customer's predictions.

Before: three transactions of ``"amount": 1e308`` made the feature pipeline
write ``inf`` means, and the scorer dead-lettered every later vector of that
customer (no predictions). Here the transactions go through the real feature
pipeline (broker, Redis) and the real scorer (MLflow champion): the three are
dead-lettered by the pipeline with their reason, and every valid transaction of
the customer — before and after them — gets a finite vector and a prediction;
nothing reaches ``features.dlq``.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from rtml_common.config import RedisSettings
from rtml_common.events import FeatureVector, Prediction, Transaction
from rtml_common.kafka.dead_letter import DeadLetter
from rtml_common.kafka.producer import EventProducer
from rtml_common.serde import decode, headers_for
from rtml_feature_pipeline import kafka_engine
from rtml_feature_pipeline.config import Settings as PipelineSettings
from rtml_feature_pipeline.worker import FeatureWorker

pytestmark = pytest.mark.integration

CUSTOMER = "c-hostile"


def transaction(tid: str, at: Any, amount: float) -> bytes:
    return json.dumps({"transaction_id": tid, "event_time": at.isoformat(),
                       "customer_id": CUSTOMER, "terminal_id": "t-hostile",
                       "amount": amount}).encode()


def test_three_huge_amounts_are_refused_and_the_customer_is_still_scored(
        deployment: Any, fresh_redis_server: Any) -> None:
    d = deployment
    champion = d.xgb_model(1)
    d.register(champion, "champion")
    producer = EventProducer(d.kafka)
    headers = headers_for(Transaction)
    valid = [f"ok-{i}" for i in range(8)]
    records = [transaction(tid, d.at(i), 25.0 + i) for i, tid in enumerate(valid[:3])]
    huge = [transaction(f"huge-{i}", d.at(3 + i), 1e308) for i in range(3)]
    records += huge
    records += [transaction(tid, d.at(6 + i), 40.0 + i) for i, tid in enumerate(valid[3:])]
    for value in records:
        producer.send_raw("transactions", CUSTOMER.encode(), value, headers)
    producer.close()  # flushed and released: no client left reconnecting once the broker stops

    workers: list[FeatureWorker] = []
    kafka_engine.run(PipelineSettings(consumer_group=f"fp-{d.name}"), d.kafka,
                     RedisSettings(url=fresh_redis_server.url), max_idle_s=3,
                     install_signal_handlers=False, on_worker=workers.append)
    (worker,) = workers
    assert worker.events_applied == len(valid)
    refused = [DeadLetter.from_message(m) for m in d.read_all("transactions.dlq")]
    assert sorted(letter.value for letter in refused) == sorted(huge)
    assert all("amount: Input should be less than or equal to" in letter.reason
               for letter in refused)

    running = d.start_scorer()
    d.wait_until(lambda: running.scorer.predictions + running.scorer.dead_lettered
                 >= worker.vectors_published, what="every vector scored")
    run = running.finish()

    vectors = [decode(m.value(), FeatureVector) for m in d.read_all("features")]
    assert {v.transaction_id for v in vectors} == set(valid)
    assert all(math.isfinite(x) for v in vectors for x in v.features.values())
    assert d.read_all("features.dlq") == []
    predictions = [decode(m.value(), Prediction) for m in d.read_all("predictions")]
    assert {p.transaction_id for p in predictions} == set(valid)
    # Each score is the champion's on one of the transaction's vectors (a revision is
    # scored again): finite features in, a real probability out.
    scores = champion.predict(np.array([[v.features[n] for n in d.names] for v in vectors]))
    possible: dict[str, list[float]] = {}
    for v, score in zip(vectors, scores, strict=True):
        possible.setdefault(v.transaction_id, []).append(float(score))
    for p in predictions:
        assert 0.0 <= p.score <= 1.0
        assert any(abs(p.score - score) < 1e-6 for score in possible[p.transaction_id])
    assert run.detached == []
    newest = {v.transaction_id: v for v in sorted(vectors, key=lambda v: v.revision)}
    # The customer's newest vector counts the eight valid payments only.
    last = newest[valid[-1]]
    assert last.features["customer_id_nb_tx_1day_window"] == len(valid)
    assert last.event_time == d.at(10)
    assert last.event_time - d.at(0) < timedelta(days=1)
