"""The three figures of the evaluation protocol: ROC AUC, average precision, card precision@k.

AUC and AP are threshold-free and computed per transaction (scikit-learn).
Card precision@k is what an investigation team experiences: each day they can
check ``k`` cards, so the question is how many of the ``k`` cards the model
ranks highest are really compromised. A card's score for the day is its
highest transaction score, its label whether any of its transactions that day
is fraud. A card detected on an earlier test day (a fraud among that day's
top ``k``) is blocked and is not counted again. Precision divides by ``k``
even on a day with fewer than ``k`` cards, and the figure is the mean over
days — the reference handbook's ``card_precision_top_k``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score


@dataclass(frozen=True)
class Metrics:
    """Test figures of one model on one split."""

    auc: float
    ap: float
    cp_at_k: float
    k: int
    n: int
    n_fraud: int
    #: Card precision@k of each test day, in day order.
    cp_per_day: tuple[float, ...] = ()

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """Flat numeric figures for logging (``cp_at_100`` style names)."""
        return {
            f"{prefix}auc": self.auc,
            f"{prefix}ap": self.ap,
            f"{prefix}cp_at_{self.k}": self.cp_at_k,
            f"{prefix}n": float(self.n),
            f"{prefix}n_fraud": float(self.n_fraud),
        }

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def card_precision_at_k(frame: pd.DataFrame, k: int = 100, score: str = "score") -> list[float]:
    """Card precision@k per day, detected cards excluded from later days.

    ``frame`` columns: ``day``, ``customer_id``, ``is_fraud`` and ``score``.
    Ties between card scores are broken by customer id, so the result is
    deterministic.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    detected: set[object] = set()
    per_day: list[float] = []
    cards = (frame.groupby(["day", "customer_id"], sort=True)
             .agg(score=(score, "max"), is_fraud=("is_fraud", "max"))
             .reset_index())
    for _, day_cards in cards.groupby("day", sort=True):
        candidates = day_cards[~day_cards["customer_id"].isin(detected)]
        top = candidates.sort_values(["score", "customer_id"], ascending=[False, True],
                                     kind="stable").head(k)
        frauds = top[top["is_fraud"].astype(bool)]
        per_day.append(len(frauds) / k)
        detected.update(frauds["customer_id"].tolist())
    return per_day


def evaluate(frame: pd.DataFrame, scores: npt.ArrayLike | Sequence[float],
             k: int = 100) -> Metrics:
    """AUC, AP and card precision@k of ``scores`` on ``frame`` (``day``, ``customer_id``,
    ``is_fraud``), row-aligned."""
    values = np.asarray(scores, dtype=np.float64)
    if len(values) != len(frame):
        raise ValueError(f"{len(values)} scores for {len(frame)} rows")
    labels = frame["is_fraud"].to_numpy(dtype=bool)
    n_fraud = int(labels.sum())
    both = 0 < n_fraud < len(labels)
    auc = float(roc_auc_score(labels, values)) if both else float("nan")
    ap = float(average_precision_score(labels, values)) if both else float("nan")
    scored = pd.DataFrame({"day": frame["day"].to_numpy(),
                           "customer_id": frame["customer_id"].to_numpy(),
                           "is_fraud": labels, "score": values})
    per_day = card_precision_at_k(scored, k)
    return Metrics(auc=auc, ap=ap, cp_at_k=float(np.mean(per_day)) if per_day else float("nan"),
                   k=k, n=len(values), n_fraud=n_fraud, cp_per_day=tuple(per_day))


#: The figures :func:`spread_of` summarises, by their short names.
FIGURES: tuple[str, ...] = ("auc", "ap", "cp")


def figure(metrics: Metrics, name: str) -> float:
    """One figure of an evaluation by its short name: ``auc``, ``ap`` or ``cp`` (CP@k)."""
    return {"auc": metrics.auc, "ap": metrics.ap, "cp": metrics.cp_at_k}[name]


def spread_of(results: Sequence[Metrics]) -> dict[str, tuple[float, float]]:
    """Mean and (population) standard deviation of each figure over evaluations.

    What a fold table reports beside its mean: how much one week moves the
    figure. NaN for both when ``results`` is empty (a trial pruned before its
    first fold).

    >>> m = [Metrics(auc=0.8, ap=0.6, cp_at_k=0.3, k=100, n=10, n_fraud=1),
    ...      Metrics(auc=0.9, ap=0.7, cp_at_k=0.3, k=100, n=10, n_fraud=1)]
    >>> {k: (round(a, 3), round(b, 3)) for k, (a, b) in spread_of(m).items()}
    {'auc': (0.85, 0.05), 'ap': (0.65, 0.05), 'cp': (0.3, 0.0)}
    """
    out: dict[str, tuple[float, float]] = {}
    for name in FIGURES:
        series = np.array([figure(m, name) for m in results])
        out[name] = ((float(series.mean()), float(series.std())) if len(series)
                     else (math.nan, math.nan))
    return out


def mean_of(results: Sequence[Metrics]) -> Metrics:
    """Mean AUC, AP and CP over several evaluations (e.g. prequential folds); n summed."""
    if not results:
        raise ValueError("no metrics to average")
    return Metrics(auc=float(np.mean([m.auc for m in results])),
                   ap=float(np.mean([m.ap for m in results])),
                   cp_at_k=float(np.mean([m.cp_at_k for m in results])),
                   k=results[0].k, n=sum(m.n for m in results),
                   n_fraud=sum(m.n_fraud for m in results))
