"""Backtest: numbers on a small hand-made log, checked by hand."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml

from rtml_decision.rules import DEFAULT_RULES, RuleSet, backtest, load_rule_set, parse_rule_set


def make(rules: list[dict[str, object]]) -> RuleSet:
    return parse_rule_set(yaml.safe_dump({"name": "cand", "version": 2, "rules": rules}))


CANDIDATE = make([
    {"name": "big", "when": "amount >= 100", "outcome": "review", "priority": 1},
    {"name": "huge", "when": "amount >= 1000", "outcome": "decline", "priority": 2},
    {"name": "risky", "when": "score >= 0.9", "outcome": "decline", "priority": 3},
])

LOG = pd.DataFrame({
    "transaction_id": [1, 2, 3, 4, 5, 6],
    "amount": [50.0, 150.0, 2000.0, 60.0, 70.0, 500.0],
    "score": [0.1, 0.2, 0.5, 0.95, math.nan, 0.3],
    "outcome": ["approve", "approve", "review", "approve", "decline", "review"],
    "is_fraud": [0, 0, 1, 1, None, 0],
})
# After: 1 approve, 2 review, 3 decline (huge), 4 decline (risky), 5 approve (no score),
# 6 review.


def test_backtest_against_the_logged_outcomes() -> None:
    bt = backtest(CANDIDATE, LOG)
    assert (bt.rows, bt.evaluated, bt.skipped) == (6, 6, 0)
    assert bt.before == {"approve": 3, "review": 2, "decline": 1}
    assert bt.after == {"approve": 2, "review": 2, "decline": 2}
    assert bt.rates("after") == pytest.approx({"approve": 2 / 6, "review": 2 / 6,
                                               "decline": 2 / 6})
    assert bt.transitions == {
        "approve": {"approve": 1, "review": 1, "decline": 1},
        "review": {"approve": 0, "review": 1, "decline": 1},
        "decline": {"approve": 1, "review": 0, "decline": 0},
    }
    assert bt.changed == 4
    assert [e["transaction_id"] for e in bt.changed_examples] == ["2", "3", "4", "5"]
    assert bt.labelled == 5
    assert bt.before_labels is not None and bt.after_labels is not None
    b, a = bt.before_labels, bt.after_labels
    assert (b.frauds, b.genuine, b.caught, b.declined, b.missed) == (2, 3, 1, 0, 1)
    assert (b.false_positives, b.false_declines) == (1, 0)
    assert (a.frauds, a.caught, a.declined, a.missed) == (2, 2, 2, 0)
    assert (a.false_positives, a.false_declines) == (2, 0)
    assert (b.recall, a.recall) == (0.5, 1.0)
    assert (b.precision, a.precision) == (0.5, 0.5)
    assert bt.rule_fires == {"big": 3, "huge": 1, "risky": 1}
    assert bt.rule_errors == {}


def test_backtest_against_the_current_rule_set() -> None:
    current = make([{"name": "huge", "when": "amount >= 1000", "outcome": "decline"}])
    bt = backtest(CANDIDATE, LOG.drop(columns=["outcome"]), current=current)
    assert bt.baseline.startswith("`cand` 2+")
    assert bt.before == {"approve": 5, "review": 0, "decline": 1}
    assert bt.changed == 3  # rows 2 and 6 now reviewed, row 4 declined


def test_reports_render() -> None:
    bt = backtest(CANDIDATE, LOG)
    data = json.loads(json.dumps(bt.to_dict()))
    assert data["after_labels"]["caught"] == 2 and data["changed"] == 4
    md = bt.to_markdown()
    assert "**4 decisions change** (66.67%)" in md
    assert "| decline | 1 (16.67%) | 2 (33.33%) | +1 |" in md
    assert "| frauds missed (approved) | 1 | 0 |" in md
    assert "| risky | 1 | 0 |" in md


def test_rows_missing_a_required_input_are_skipped_and_columns_checked() -> None:
    log = LOG.copy()
    log.loc[0, "amount"] = math.nan
    bt = backtest(CANDIDATE, log)
    assert (bt.evaluated, bt.skipped, bt.skipped_examples) == (5, 1, ["1"])
    with pytest.raises(ValueError, match="lack column"):
        backtest(CANDIDATE, LOG.drop(columns=["amount"]))
    with pytest.raises(ValueError, match="outcome"):
        backtest(CANDIDATE, LOG.drop(columns=["outcome"]))
    unlabelled = backtest(CANDIDATE, LOG.drop(columns=["is_fraud"]))
    assert unlabelled.labelled == 0 and unlabelled.after_labels is None
    assert "labelled" not in unlabelled.to_markdown()


def test_backtest_of_the_default_rule_set_runs() -> None:
    rs = load_rule_set(DEFAULT_RULES)
    rows = [dict(t.input) for t in rs.tests]
    frame = pd.DataFrame(rows)
    frame["transaction_id"] = range(len(frame))
    frame["outcome"] = [t.outcome.value if t.outcome else "approve" for t in rs.tests]
    bt = backtest(rs, frame)
    assert bt.changed == 0 and bt.evaluated == len(rs.tests)
