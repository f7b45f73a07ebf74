"""Rule validation and backtests in a worker process: results, refusals, the hard time limit."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from rtml_decision.rule_worker import JobTimeout, RuleWorker
from rtml_decision.rules import DEFAULT_RULES, RuleSetError, load_rule_set

CANDIDATE = """name: cand
version: "2"
rules:
  - {name: big, when: "amount >= 100", outcome: review}
tests:
  - {name: small, input: {amount: 5.0}, expect: {outcome: approve}}
"""


def run(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def test_a_valid_rule_set_comes_back_compiled() -> None:
    worker = RuleWorker(validation_timeout_s=60, backtest_timeout_s=60)
    rule_set = run(worker.validate(CANDIDATE))
    assert rule_set.name == "cand" and rule_set.version.startswith("2+")  # type: ignore[attr-defined]
    assert rule_set.evaluate({"amount": 150.0}).outcome.value == "review"  # type: ignore[attr-defined]


def test_an_invalid_rule_set_is_refused_with_the_validators_message() -> None:
    worker = RuleWorker(validation_timeout_s=60, backtest_timeout_s=60)
    failing = CANDIDATE.replace("outcome: approve", "outcome: review")
    with pytest.raises(RuleSetError, match=r"<upload>: 1 of 1 embedded test\(s\) failed"):
        run(worker.validate(failing))


def test_a_job_past_its_limit_is_killed_not_abandoned() -> None:
    lines = ["name: slow", 'version: "1"', "rules:"]
    lines += [f'  - {{name: r{i}, when: "amount >= {i}", outcome: review}}' for i in range(2000)]
    lines += ["tests:"] + [f"  - {{name: t{i}, input: {{amount: 0.5}}, expect: "
                           "{outcome: approve}}" for i in range(12_000)]
    worker = RuleWorker(validation_timeout_s=1, backtest_timeout_s=1)
    # valid (every test passes) but minutes of work: only the limit can refuse it
    with pytest.raises(JobTimeout, match="took longer than 1 s"):
        run(worker.validate("\n".join(lines)))


def test_backtest_in_the_worker_matches_the_active_rules_and_handles_an_empty_log() -> None:
    worker = RuleWorker(validation_timeout_s=60, backtest_timeout_s=60)
    current = load_rule_set(DEFAULT_RULES)
    frame = pd.DataFrame({"transaction_id": ["a", "b"], "amount": [5.0, 500.0],
                          "outcome": ["approve", "approve"]})
    report = run(worker.backtest(CANDIDATE, None, frame))
    assert report["rows"] == 2 and report["after"]["review"] == 1  # type: ignore[index]
    empty = run(worker.backtest(CANDIDATE, current, pd.DataFrame()))
    assert empty["rows"] == 0 and empty["evaluated"] == 0  # type: ignore[index]
