"""The decision path scores a calibrated registered champion through its calibration.

The model is registered in the session's real MLflow and loaded by
:class:`~rtml_models.serving.ServingModels`, as the service does; the request
path's own functions (:func:`rtml_decision.scoring.score` and ``explain``)
score one row. The score must be the calibrated one, bit-equal to what the
scorer's batch path (``predict``) gives the same vector, and the explanation
stays in the booster's raw margin space.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rtml_decision.scoring import explain, pick_model, score
from rtml_features.baseline import BASELINE
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.serving import ServingModels
from rtml_models.testing import calibrated_toy_model, register_champion

pytestmark = pytest.mark.integration

NAMES = list(BASELINE.names)


def test_the_request_path_scores_a_calibrated_champion_like_the_scorer(
        mlflow_server: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(30)
    rows = rng.gamma(2.0, 5.0, (2500, len(NAMES)))
    model = calibrated_toy_model(rows, NAMES, label_column=1, threshold=14, seed=31,
                                 method="platt")
    calibration = model.calibration
    assert calibration is not None
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    name = register_champion(registry, model, BASELINE)
    snapshot = ServingModels(registry, name, with_shadows=False, workdir=tmp_path).refresh()
    arm, served = pick_model(snapshot, "champion")
    assert served is not None and served.model.calibration == calibration

    probe = rows[:200]
    batch = served.model.predict(probe)  # the scorer's path for batches
    for i, row in enumerate(probe):
        features = dict(zip(NAMES, row.tolist(), strict=True))
        scored = score(served, arm, features)
        raw = model.predict_raw_one(row.tolist())
        assert scored.score == batch[i] == calibration.apply_one(raw)
        assert scored.score != raw
    features = dict(zip(NAMES, probe[0].tolist(), strict=True))
    scored = score(served, arm, features)
    raw = model.predict_raw_one(probe[0].tolist())
    bias = float(model.contributions(probe[:1])[0][-1])
    for method in ("path", "treeshap"):
        explained = explain(scored, features, top_k=len(NAMES), method=method)
        total = sum(c.contribution for c in explained.contributions) + bias
        # contributions explain the raw margin, not the calibrated score's logit
        assert total == pytest.approx(np.log(raw / (1 - raw)), abs=1e-3)
        assert explained.score == scored.score
