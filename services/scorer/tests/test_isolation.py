"""A shadow that raises, returns NaN or is slow never touches the champion's outputs.

Runs :class:`rtml_scorer.scorer.Scorer` on hand-made records with a recording
producer (the Kafka/MLflow path is covered in test_scoring.py); the models
are deliberately broken :class:`ScoringModel` implementations.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import orjson

from rtml_common.events import FeatureVector
from rtml_common.kafka.consumer import Record
from rtml_models.base import F64, ScoringModel
from rtml_models.registry.base import ModelVersion
from rtml_models.serving import ServedModel, Snapshot
from rtml_scorer.config import Settings
from rtml_scorer.scorer import Scorer

T0 = datetime(2018, 4, 1, tzinfo=UTC)


class Model(ScoringModel):
    """Scores ``behaviour`` says: 'ok', 'raise', 'nan' or 'slow'."""

    flavor: ClassVar[str] = "test"

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour

    @property
    def feature_names(self) -> tuple[str, ...]:
        return ("a", "b")

    def predict_raw(self, rows: F64) -> F64:
        if self.behaviour == "raise":
            raise RuntimeError("broken shadow")
        if self.behaviour == "nan":
            return np.full(len(rows), np.nan)
        if self.behaviour == "slow":
            time.sleep(0.02)
        return np.full(len(rows), 0.5)

    def write(self, directory: Path) -> list[str]:
        raise NotImplementedError

    @classmethod
    def read(cls, directory: Path, feature_names: tuple[str, ...],
             extra: Mapping[str, Any]) -> ScoringModel:
        raise NotImplementedError


def served(alias: str, version: str, behaviour: str) -> ServedModel:
    info = ModelVersion(name="m", version=version, run_id=None, source="", created_at=T0,
                        aliases=(alias,), tags={})
    return ServedModel(alias, info, Model(behaviour))


class Serving:
    def __init__(self, snapshot: Snapshot) -> None:
        self.current = snapshot
        self.name = snapshot.name


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None,
                 headers: Sequence[tuple[str, bytes | None]] | None = None) -> None:
        assert value is not None
        self.sent.append((topic, value))

    def send_many(self, topic: str, records: Iterable[tuple[bytes | None, bytes | None]],
                  headers: Sequence[tuple[str, bytes | None]] | None = None,
                  extra_headers: Mapping[int, Sequence[tuple[str, bytes]]] | None = None,
                  ) -> int:
        count = 0
        for key, value in records:
            self.send_raw(topic, key, value, headers)
            count += 1
        return count


def records(start: int, n: int) -> list[Record[Any]]:
    out = []
    for i in range(start, start + n):
        vector = FeatureVector(transaction_id=f"t{i}", customer_id="c", event_time=T0,
                               amount=1.0, feature_set="s", feature_set_version="v",
                               features={"a": 1.0, "b": float(i)}, computed_at=T0)
        out.append(Record("features", 0, i, b"c", vector, [], 0))
    return out


def test_raising_nan_and_slow_shadows_are_detached_the_champion_scores_everything() -> None:
    snapshot = Snapshot("m", champion=served("champion", "1", "ok"), shadows={
        "shadow-raise": served("shadow-raise", "2", "raise"),
        "shadow-nan": served("shadow-nan", "3", "nan"),
        "shadow-slow": served("shadow-slow", "4", "slow"),
        "shadow": served("shadow", "5", "ok"),
    })
    producer = Producer()
    settings = Settings(shadow_failure_limit=2, shadow_latency_budget_ms=5)
    scorer = Scorer(settings, Serving(snapshot), producer, "g")  # type: ignore[arg-type]
    batches = [records(0, 10), records(10, 1), records(11, 10), records(21, 5)]
    for batch in batches:
        scorer.handle(batch)

    by_topic: dict[str, list[dict[str, Any]]] = {}
    for topic, value in producer.sent:
        by_topic.setdefault(topic, []).append(orjson.loads(value))
    assert [p["transaction_id"] for p in by_topic["predictions"]] == [f"t{i}" for i in range(26)]
    assert {p["model_version"] for p in by_topic["predictions"]} == {"1"}
    shadow_versions = [s["model_version"] for s in by_topic["shadow-scores"]]
    # The slow shadow's valid scores are published until it is detached (2 batches: 11 rows).
    assert Counter(shadow_versions) == {"5": 26, "4": 11}
    assert scorer.guard.detached() == [("shadow-nan", "3"), ("shadow-raise", "2"),
                                       ("shadow-slow", "4")]
    assert scorer.single_row_batches == 1

