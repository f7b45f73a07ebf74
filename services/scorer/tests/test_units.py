"""The scorer's pieces without servers: sampling, matrices, the guard, outputs, learning order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from rtml_common.events import FeatureVector, Label, Prediction, ShadowScore
from rtml_common.serde import decode
from rtml_models.registry.base import ModelVersion
from rtml_models.river import RiverModel, default_online_model
from rtml_models.serving import ServedModel
from rtml_scorer.config import Settings
from rtml_scorer.guard import ShadowGuard
from rtml_scorer.matrix import build_matrix
from rtml_scorer.online import OnlineLearner
from rtml_scorer.outputs import prediction_json, shadow_json
from rtml_scorer.sampling import ShadowSampler, bucket

T0 = datetime(2018, 4, 1, tzinfo=UTC)


def _vector(tx: str = "t1") -> FeatureVector:
    return FeatureVector(transaction_id=tx, customer_id="c1", event_time=T0, amount=1.0,
                         feature_set="baseline", feature_set_version="v", features={"a": 1.0},
                         computed_at=T0)


def test_sampling_is_deterministic_and_close_to_the_percent() -> None:
    sampler = ShadowSampler(10.0, {"shadow-half": 50.0})
    ids = [f"tx-{i}" for i in range(20_000)]
    ten = sampler.indices("shadow-a", ids)
    assert ten == ShadowSampler(10.0).indices("shadow-a", ids)  # any process, same answer
    assert 0.09 < len(ten) / len(ids) < 0.11
    assert 0.48 < len(sampler.indices("shadow-half", ids)) / len(ids) < 0.52
    other = set(sampler.indices("shadow-b", ids))
    assert len(other & set(ten)) < len(ten) / 2  # aliases sample independently
    assert all(sampler.selected("shadow-a", ids[i]) for i in ten[:50])
    assert bucket("shadow-a", "tx-1") == bucket("shadow-a", "tx-1")


def test_per_alias_percents_are_validated() -> None:
    assert Settings(shadow_sample_percents={"shadow-river": 5}).sample_percent("shadow-river") == 5
    assert Settings(shadow_sample_percent=20).sample_percent("challenger") == 20
    with pytest.raises(ValueError, match="champion"):
        Settings(shadow_sample_percents={"champion": 5})
    with pytest.raises(ValueError, match="percentage"):
        Settings(shadow_sample_percents={"shadow": 101})


def test_matrix_orders_columns_and_names_missing_features() -> None:
    vectors = [{"a": 1.0, "b": 2.0}, {"b": 3.0}, {"a": 5.0, "b": 6.0, "c": 9.0}]
    matrix, missing = build_matrix(vectors, ("b", "a"))
    assert matrix.tolist() == [[2.0, 1.0], [6.0, 5.0]]
    assert missing == {1: ["a"]}
    single, none = build_matrix([{"a": 1.0}], ("a",))
    assert single.shape == (1, 1) and none == {}


def test_guard_detaches_after_consecutive_failures_only() -> None:
    guard = ShadowGuard(limit=3)
    key = ("shadow", "2")
    guard.failure(key, "error")
    guard.failure(key, "error")
    guard.success(key)  # a success resets the streak
    assert not guard.failure(key, "nan") and not guard.failure(key, "nan")
    assert guard.failure(key, "nan") and guard.is_detached(key)
    assert guard.detached() == [key]
    assert guard.reattach(version="9") == 0 and guard.is_detached(key)
    assert guard.reattach(version="2") == 1 and not guard.is_detached(key)


def test_output_json_is_the_event_schema() -> None:
    vector = _vector()
    prediction = decode(prediction_json(vector, "m", "3", 0.25, 0.01, T0), Prediction)
    assert (prediction.model_version, prediction.score, prediction.role) == ("3", 0.25, "champion")
    shadow = decode(shadow_json(vector, "m", "4", 0.5, 0.02, T0, "3"), ShadowScore)
    assert (shadow.model_version, shadow.champion_version, shadow.role) == ("4", "3", "shadow")


def _served(model: RiverModel) -> ServedModel:
    info = ModelVersion(name="m", version="7", run_id=None, source="", created_at=T0,
                        aliases=("shadow-river",), tags={})
    return ServedModel("shadow-river", info, model)


def test_a_label_is_learned_only_once_the_stream_reaches_labeled_at() -> None:
    model = RiverModel(default_online_model(), ("a", "b"))
    served = _served(model)
    learner = OnlineLearner(cache_size=10, max_age_ms=10**12, buffer_size=10)
    ms = 1_000_000
    learner.remember("t1", 0, ms, ("a", "b"), np.array([1.0, 2.0]))
    learner.observe(0, ms)
    learner.observe(1, ms + 5_000)
    label = Label(transaction_id="t1", customer_id="c", transaction_time=T0,
                  labeled_at=T0 + timedelta(seconds=3), is_fraud=True)
    learner.add_label(label, ms + 3_000)
    assert learner.learn_due([served]).learned == 0  # partition 0 is still at ms
    assert model.updates == 0 and learner.pending_labels == 1
    learner.observe(0, ms + 3_000)
    assert learner.learn_due([served]).learned == 1
    assert model.updates == 1 and learner.pending_labels == 0
    # The same label again (a redelivery) finds no cached vector: not learned twice.
    learner.add_label(label, ms + 3_000)
    assert learner.learn_due([served]).unmatched == 1 and model.updates == 1


def test_revoked_partitions_stop_holding_stream_time_back() -> None:
    learner = OnlineLearner(cache_size=10, max_age_ms=1000, buffer_size=1)
    learner.observe(0, 100)
    learner.observe(3, 50)
    assert learner.stream_time_ms() == 50
    learner.keep_partitions([0])
    assert learner.stream_time_ms() == 100
    label = Label(transaction_id="x", customer_id="c", transaction_time=T0, labeled_at=T0,
                  is_fraud=False)
    assert learner.add_label(label, 1) and not learner.add_label(label, 1)  # bounded buffer
    assert learner.dropped_labels == 1


def test_cache_keeps_the_newest_revision_and_is_bounded() -> None:
    learner = OnlineLearner(cache_size=2, max_age_ms=10**12, buffer_size=10)
    learner.remember("t1", 1, 10, ("a",), np.array([2.0]))
    learner.remember("t1", 0, 10, ("a",), np.array([1.0]))  # older revision: ignored
    learner.remember("t2", 0, 11, ("a",), np.array([3.0]))
    learner.remember("t3", 0, 12, ("a",), np.array([4.0]))
    assert learner.cached_vectors == 2
