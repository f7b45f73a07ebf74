"""Scoring one request in-process with the arm's model, and explaining the score.

Models come from :class:`rtml_models.serving.ServingModels` — the scorer's
own loading code — so both services agree on what an alias means. The
request path takes one :class:`~rtml_models.serving.Snapshot` and uses it
throughout, so a hot reload never mixes versions within a decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from rtml_models.aliases import CHAMPION
from rtml_models.serving import ServedModel, Snapshot


@dataclass(frozen=True, slots=True)
class Contribution:
    """One feature's share of the score (log-odds, XGBoost ``pred_contribs``)."""

    feature: str
    value: float
    contribution: float
    #: ``treeshap`` (exact SHAP) or ``path`` (Saabas: the path the row took).
    method: str = "treeshap"


@dataclass(frozen=True, slots=True)
class Scored:
    """The score of one request and who produced it."""

    arm: str
    served: ServedModel
    score: float
    contributions: list[Contribution]


def pick_model(snapshot: Snapshot, arm: str) -> tuple[str, ServedModel | None]:
    """The model serving ``arm``; the champion when that arm has no model loaded.

    Returns the arm actually served, so the decision records the truth.
    """
    if arm != CHAMPION:
        served = snapshot.shadows.get(arm)
        if served is not None:
            return arm, served
    return CHAMPION, snapshot.champion


def score(served: ServedModel, arm: str, features: Mapping[str, float]) -> Scored:
    """Score ``features`` (missing names count as 0), without contributions yet."""
    row = [features.get(name, 0.0) for name in served.model.feature_names]
    return Scored(arm, served, served.model.predict_one(row), [])


def explain(scored: Scored, features: Mapping[str, float], top_k: int,
            method: str = "treeshap") -> Scored:
    """``scored`` with its ``top_k`` feature contributions, ranked by absolute value.

    ``treeshap``: exact TreeSHAP (XGBoost ``pred_contribs``), several times
    the cost of the score; ``path``: the path (Saabas) attribution, about the
    cost of the score, from the one-row tree walker. The engine uses the
    exact one where a person will read it (review, decline) — see
    ``RTML_DECISION_CONTRIBUTIONS``. Models without contributions (non-tree
    flavours) return none.
    """
    model = scored.served.model
    explain_rows = getattr(model, "contributions", None)
    explain_path = getattr(model, "path_contributions", None)
    if not top_k or explain_rows is None:
        return scored
    names = model.feature_names
    row = [features.get(name, 0.0) for name in names]
    if method == "path" and explain_path is not None:
        contribs = np.asarray(explain_path(row))[:len(names)]
    else:
        method = "treeshap"
        contribs = explain_rows(np.asarray([row], dtype=np.float64))[0][:len(names)]
    order = np.argsort(-np.abs(contribs))[:top_k]
    return replace(scored, contributions=[
        Contribution(names[i], row[i], float(contribs[i]), method) for i in order])
