"""The traffic summary keeps one decline whole: the highest-scoring, for the demo to show."""

from __future__ import annotations

from rtml_cli.traffic.sender import Answer
from rtml_cli.traffic.stats import TrafficStats


def _decline(score: float | None, tx: str) -> Answer:
    return Answer(200, 0.01, outcome="decline",
                  decision={"transaction_id": tx, "outcome": "decline", "score": score})


def test_the_highest_scoring_decline_is_kept_and_others_only_counted() -> None:
    stats = TrafficStats()
    stats.record(Answer(200, 0.01, outcome="approve"))
    assert stats.as_dict()["example_decline"] is None
    stats.record(_decline(None, "tx-no-score"))
    stats.record(_decline(0.91, "tx-high"))
    stats.record(_decline(0.62, "tx-lower"))
    summary = stats.as_dict()
    assert summary["outcomes"] == {"approve": 1, "review": 0, "decline": 3}
    assert summary["example_decline"]["transaction_id"] == "tx-high"


def test_a_decline_without_a_score_is_kept_when_it_is_the_only_one() -> None:
    stats = TrafficStats()
    stats.record(_decline(None, "tx-rule-only"))
    assert stats.as_dict()["example_decline"]["transaction_id"] == "tx-rule-only"
