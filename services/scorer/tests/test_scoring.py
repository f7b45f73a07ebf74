"""The scorer against a real broker and MLflow: outputs, sampling, reload, isolation, learning.

Each test gets a broker of its own (every platform topic created) and a
model name of its own in the session's MLflow; the scorer runs in-process
(``rtml_scorer.service.run`` in a thread) so tests can watch its counters.
Nothing here asserts timing.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np
import pytest

from rtml_common.events import FeatureVector, Prediction, ShadowScore
from rtml_common.kafka.dead_letter import DeadLetter
from rtml_common.serde import decode
from rtml_models.base import OnlineModel
from rtml_scorer.sampling import ShadowSampler

pytestmark = pytest.mark.integration


def _decoded(records: list[Any], event_type: type[Any]) -> list[Any]:
    return [decode(r.value(), event_type) for r in records]


def test_champion_and_shadows_score_with_their_versions(deployment: Any) -> None:
    d = deployment
    champion = d.xgb_model(1)
    v1 = d.register(champion, "champion")
    v2 = d.register(d.xgb_model(2), "shadow")
    v3 = d.register(d.xgb_model(3), "challenger")
    vectors = [d.vector(i, c, d.at(i)) for i, c in enumerate(d.customers() * 5)]
    incomplete = d.vector(9999, "c1", d.at(0), features={"tx_amount": 3.0})
    d.produce([*vectors, incomplete])
    running = d.start_scorer(shadow_sample_percents={"challenger": 50})
    d.wait_until(lambda: running.scorer.predictions + running.scorer.dead_lettered >= 201,
                 what="all vectors scored")
    run = running.finish()

    predictions = _decoded(d.read_all("predictions"), Prediction)
    assert Counter(p.transaction_id for p in predictions) == Counter(
        v.transaction_id for v in vectors)
    assert {p.model_version for p in predictions} == {v1}
    by_tx = {v.transaction_id: v for v in vectors}
    expected = champion.predict(np.array([[by_tx[p.transaction_id].features[n]
                                           for n in d.names] for p in predictions]))
    assert np.allclose([p.score for p in predictions], expected, atol=1e-6)

    shadows = _decoded(d.read_all("shadow-scores"), ShadowScore)
    per_version = defaultdict(list)
    for s in shadows:
        per_version[s.model_version].append(s.transaction_id)
        assert s.champion_version == v1
    assert sorted(per_version[v2]) == sorted(by_tx)  # 100 %
    sampled = ShadowSampler(100, {"challenger": 50}).indices("challenger", list(by_tx))
    assert sorted(per_version[v3]) == sorted(list(by_tx)[i] for i in sampled)
    assert 0 < len(per_version[v3]) < len(vectors)

    [dead] = [DeadLetter.from_message(m) for m in d.read_all("features.dlq")]
    assert dead.error_type == "MissingFeature"
    assert "customer_id_nb_tx_1day_window" in dead.reason
    assert decode(dead.value, FeatureVector).transaction_id == "tx-9999"
    assert run.detached == []


def test_hot_reload_switches_version_at_a_batch_boundary_without_loss(deployment: Any) -> None:
    d = deployment
    v1 = d.register(d.xgb_model(1), "champion")
    v2 = d.register(d.xgb_model(2))
    customers = d.customers()
    first = [d.vector(i, customers[i % 40], d.at(i)) for i in range(400)]
    second = [d.vector(i, customers[i % 40], d.at(i)) for i in range(400, 800)]
    running = d.start_scorer()
    d.produce(first)
    d.wait_until(lambda: running.scorer.predictions >= 200, what="first predictions")
    d.registry.set_alias(d.name, "champion", v2)
    d.produce([d.model_event(d.name, "champion", v2)])
    d.wait_until(lambda: running.scorer.serving.current.describe() == {"champion": v2},
                 what="the reload")
    d.produce(second)
    d.wait_until(lambda: running.scorer.predictions >= 800, what="all predictions")
    run = running.finish()

    records = d.read_all("predictions")
    predictions = _decoded(records, Prediction)
    # Every transaction scored exactly once by the champion, across the reload.
    assert Counter(p.transaction_id for p in predictions) == Counter(
        v.transaction_id for v in first + second)
    # Per partition (output order = scoring order), versions go v1... then v2..., never back.
    sequences: dict[int, list[str]] = defaultdict(list)
    for record, prediction in zip(records, predictions, strict=True):
        sequences[record.partition()].append(prediction.model_version)
    for sequence in sequences.values():
        switch = sequence.index(v2) if v2 in sequence else len(sequence)
        assert set(sequence[:switch]) <= {v1} and set(sequence[switch:]) <= {v2}
    assert {p.model_version for p in predictions if p.transaction_id in
            {v.transaction_id for v in second}} == {v2}
    assert run.reloads >= 1


def test_a_broken_shadow_is_detached_and_the_champion_is_unaffected(deployment: Any) -> None:
    d = deployment
    v1 = d.register(d.xgb_model(1), "champion")
    nan_version = d.register(d.river_model(nan=True), "shadow-nan")
    wrong_inputs = d.register(d.river_model(names=[*d.names, "no_such_feature"]), "shadow-bad")
    healthy = d.register(d.xgb_model(4), "shadow")
    running = d.start_scorer(shadow_failure_limit=3)
    scorer = running.scorer
    batches = 6
    for batch in range(batches):
        # One chunk at a time, each scored before the next: at least one batch each.
        d.produce([d.vector(batch * 40 + k, c, d.at(batch)) for k, c in
                   enumerate(d.customers())])
        d.wait_until(lambda b=batch: scorer.predictions >= (b + 1) * 40, what="chunk scored")
    run = running.finish()

    assert sorted(run.detached) == sorted([("shadow-nan", nan_version),
                                           ("shadow-bad", wrong_inputs)])
    predictions = _decoded(d.read_all("predictions"), Prediction)
    assert len(predictions) == batches * 40
    assert len({p.transaction_id for p in predictions}) == batches * 40
    assert {p.model_version for p in predictions} == {v1}
    shadows = _decoded(d.read_all("shadow-scores"), ShadowScore)
    assert {s.model_version for s in shadows} == {healthy}  # nothing from the broken ones
    assert len(shadows) == batches * 40
    health = scorer.guard.health(("shadow-nan", nan_version))
    assert health.total_failures == 3 and health.last_reason == "invalid_score"
    assert scorer.guard.health(("shadow-bad", wrong_inputs)).last_reason == "missing_feature"


def test_online_challenger_learns_a_label_only_once_the_stream_reaches_it(
        deployment: Any) -> None:
    d = deployment
    d.register(d.xgb_model(1), "champion")
    river_version = d.register(d.river_model(), "shadow-river")
    customers = d.customers()
    running = d.start_scorer(checkpoint_interval_s=0)
    scorer = running.scorer

    def river() -> OnlineModel:
        model = scorer.serving.current.shadows["shadow-river"].model
        assert isinstance(model, OnlineModel)
        return model

    d.produce([d.vector(i, c, d.at(0)) for i, c in enumerate(customers)])
    d.wait_until(lambda: scorer.predictions >= 40, what="first vectors")
    # Label of tx-0 known at minute 60; the stream is at minute 0.
    d.produce([d.label(0, customers[0], d.at(60))])
    d.wait_until(lambda: scorer.learner.pending_labels == 1, what="label held")
    d.produce([d.vector(100 + i, c, d.at(30)) for i, c in enumerate(customers)])
    d.wait_until(lambda: scorer.predictions >= 80, what="minute-30 vectors")
    assert river().updates == 0 and scorer.learner.pending_labels == 1  # not yet: 30 < 60
    d.produce([d.vector(200 + i, c, d.at(61)) for i, c in enumerate(customers)])
    d.wait_until(lambda: river().updates == 1, what="the label learned")
    assert scorer.learner.pending_labels == 0
    run = running.finish()

    # Shutdown checkpointed the learned state as a new version, aliases untouched.
    [checkpoint] = run.checkpoints
    info = d.registry.get_version(d.name, checkpoint)
    assert info.parent_version == river_version
    assert d.registry.aliases(d.name)["shadow-river"] == river_version
    restored = d.registry.load(d.name, checkpoint, d.tmp / "restored")
    assert isinstance(restored, OnlineModel) and restored.updates == 1
