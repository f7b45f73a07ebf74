"""AUC, AP and card precision@k, checked by hand and against independent computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rtml_training.metrics import card_precision_at_k, evaluate, mean_of


def day(n: int) -> pd.Timestamp:
    return pd.Timestamp("2018-08-08", tz="UTC") + pd.Timedelta(days=n)


def scored(rows: list[tuple[int, int, int, float]]) -> pd.DataFrame:
    """Rows of (day, card, fraud, score)."""
    return pd.DataFrame({"day": [day(r[0]) for r in rows], "customer_id": [r[1] for r in rows],
                         "is_fraud": [bool(r[2]) for r in rows], "score": [r[3] for r in rows]})


def test_card_precision_by_hand() -> None:
    frame = scored([
        # day 0: card scores are the max over the day: A=0.9 (fraud), B=0.8, C=0.7 (fraud), D=0.1
        (0, 1, 0, 0.2), (0, 1, 1, 0.9), (0, 2, 0, 0.8), (0, 3, 1, 0.7), (0, 4, 0, 0.1),
        # day 1: card 1 again tops the ranking but was detected on day 0 -> excluded;
        # card 3 was fraud on day 0 but ranked 3rd (outside top 2): not detected, stays.
        (1, 1, 1, 0.99), (1, 3, 1, 0.95), (1, 2, 0, 0.5), (1, 4, 1, 0.4),
    ])
    per_day = card_precision_at_k(frame, k=2)
    # day 0 top 2: cards 1 (fraud), 2 (genuine) -> 1/2; detected = {1}
    # day 1 candidates 3 (0.95, fraud), 2 (0.5), 4 (0.4): top 2 = 3, 2 -> 1/2
    assert per_day == [0.5, 0.5]
    # Without the exclusion day 1 would have been 2/2: check that the exclusion is what bit.
    assert card_precision_at_k(frame[frame["day"] == day(1)], k=2) == [1.0]


def test_card_precision_divides_by_k_on_small_days_and_breaks_ties_by_card() -> None:
    frame = scored([(0, 5, 1, 0.5), (0, 6, 0, 0.5), (0, 7, 1, 0.5)])
    assert card_precision_at_k(frame, k=2) == [0.5]    # tie: cards 5 and 6 win (lower ids)
    assert card_precision_at_k(frame, k=10) == [pytest.approx(0.2)]
    with pytest.raises(ValueError):
        card_precision_at_k(frame, k=0)


def _auc_by_pairs(labels: np.ndarray, scores: np.ndarray) -> float:
    """Probability a random fraud outranks a random genuine row (ties count 1/2)."""
    pos, neg = scores[labels], scores[~labels]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def _ap_by_hand(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean of the precision at each fraud's rank (distinct scores)."""
    order = np.argsort(-scores)
    hits = labels[order]
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at[hits].mean())


def test_auc_and_ap_match_independent_computations() -> None:
    rng = np.random.default_rng(3)
    labels = rng.random(400) < 0.1
    scores = rng.random(400) + labels * 0.4  # distinct values, informative
    frame = pd.DataFrame({"day": [day(i % 3) for i in range(400)],
                          "customer_id": np.arange(400), "is_fraud": labels})
    metrics = evaluate(frame, scores, k=5)
    assert metrics.auc == pytest.approx(_auc_by_pairs(labels, scores), abs=1e-12)
    assert metrics.ap == pytest.approx(_ap_by_hand(labels, scores), abs=1e-12)
    assert metrics.n == 400 and metrics.n_fraud == int(labels.sum())
    assert len(metrics.cp_per_day) == 3
    assert metrics.cp_at_k == pytest.approx(np.mean(metrics.cp_per_day))
    assert set(metrics.as_dict()) == {"auc", "ap", "cp_at_5", "n", "n_fraud"}


def test_evaluate_refuses_misaligned_scores_and_survives_one_class() -> None:
    frame = scored([(0, 1, 0, 0.1), (0, 2, 0, 0.2)])
    with pytest.raises(ValueError, match="3 scores for 2 rows"):
        evaluate(frame, [0.1, 0.2, 0.3])
    metrics = evaluate(frame, frame["score"])
    assert np.isnan(metrics.auc) and metrics.cp_at_k == 0.0


def test_mean_of_folds() -> None:
    frame = scored([(0, 1, 1, 0.9), (0, 2, 0, 0.1)])
    one = evaluate(frame, frame["score"], k=1)
    mean = mean_of([one, one])
    assert mean.auc == one.auc and mean.n == 4
