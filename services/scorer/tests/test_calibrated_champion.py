"""A registered champion that carries a calibration is scored through it, on batches and
on one-row batches alike.

The model is registered in the session's real MLflow and loaded by
:class:`~rtml_models.serving.ServingModels`, as the service does; the scorer
runs :meth:`Scorer.handle` on hand-made records with a recording producer (the
Kafka path is covered in test_scoring.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from rtml_common.events import FeatureVector
from rtml_common.kafka.consumer import Record
from rtml_features.baseline import BASELINE
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.serving import ServingModels
from rtml_models.testing import calibrated_toy_model, register_champion
from rtml_scorer.config import Settings
from rtml_scorer.scorer import Scorer

pytestmark = pytest.mark.integration

NAMES = list(BASELINE.names)
T0 = datetime(2018, 4, 1, tzinfo=UTC)


class Producer:
    """Keeps what the scorer publishes."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send_many(self, topic: str, records: Iterable[tuple[bytes | None, bytes | None]],
                  headers: Sequence[tuple[str, bytes | None]] | None = None,
                  extra_headers: Mapping[int, Sequence[tuple[str, bytes]]] | None = None,
                  ) -> int:
        values = [value for _, value in records if value is not None]
        self.sent.extend((topic, value) for value in values)
        return len(values)


def _records(rows: np.ndarray, first: int) -> list[Record[Any]]:
    out = []
    for i, row in enumerate(rows, start=first):
        vector = FeatureVector(transaction_id=f"t{i}", customer_id="c", event_time=T0,
                               amount=1.0, feature_set=BASELINE.name,
                               feature_set_version=BASELINE.version,
                               features=dict(zip(NAMES, row.tolist(), strict=True)),
                               computed_at=T0)
        out.append(Record("features", 0, i, b"c", vector, [], 0))
    return out


def test_a_calibrated_champion_publishes_calibrated_scores(mlflow_server: Any,
                                                           tmp_path: Path) -> None:
    rng = np.random.default_rng(20)
    rows = rng.gamma(2.0, 5.0, (2500, len(NAMES)))
    model = calibrated_toy_model(rows, NAMES, label_column=0, threshold=12, seed=21,
                                 method="isotonic")
    calibration = model.calibration
    assert calibration is not None
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    name = register_champion(registry, model, BASELINE)
    serving = ServingModels(registry, name, workdir=tmp_path)
    champion = serving.refresh().champion
    assert champion is not None and champion.model.calibration == calibration

    producer = Producer()
    scorer = Scorer(Settings(), serving, producer, "g")  # type: ignore[arg-type]
    batch, single = rows[:40], rows[7:8]  # the single row is also the batch's row 7
    scorer.handle(_records(batch, 0))
    scorer.handle(_records(single, 40))  # a one-row batch: predict_one, the tree walker
    assert scorer.single_row_batches == 1

    scores = {(p := orjson.loads(value))["transaction_id"]: p["score"]
              for topic, value in producer.sent if topic == "predictions"}
    raw = model.predict_raw(batch)
    expected = calibration.apply(raw)
    assert [scores[f"t{i}"] for i in range(40)] == expected.tolist()
    assert scores["t40"] == scores["t7"] == calibration.apply_one(model.predict_raw_one(
        single[0].tolist()))
    assert not np.allclose(expected, raw)  # what was published is not the raw score
