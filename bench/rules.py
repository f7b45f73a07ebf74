"""Benchmark the rules engine: one evaluation of the default 20-rule DAG, load, backtest.

    python bench/rules.py                 # 200,000 evaluations + a 100,000-row backtest,
                                          # writes docs/benchmarks.md "## Rules engine"
    python bench/rules.py --quick --json  # 20,000 evaluations, 10,000-row backtest,
                                          # one JSON object on the last line

Contexts are random but realistic (scores mostly low, a few high or missing,
amounts log-normal, occasional new cards, bursts and risky terminals) so that
every rule's fast and slow paths run. Each evaluation is timed alone with
``perf_counter_ns`` (the timer's own cost, ~0.1 µs, is included); the
figures are percentiles over all of them, after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np
import pandas as pd
from benchlib import DOCS, machine, write_section

from rtml_decision.rules import (
    BASELINE_FEATURES,
    DEFAULT_RULES,
    FALLBACK_RULES,
    RuleSet,
    backtest,
    load_rule_set,
)

SECTION = "## Rules engine"
BUDGET_US = 10_000  # the decision service's p99 budget (10 ms) for the whole request


def contexts(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(3.8, 1.1, n), 2)
    score = rng.beta(0.4, 6.0, n)
    high = rng.random(n) < 0.02
    score[high] = rng.uniform(0.8, 1.0, int(high.sum()))
    missing_score = rng.random(n) < 0.01
    nb30 = rng.poisson(40, n)
    new_card = rng.random(n) < 0.03
    nb30[new_card] = rng.integers(0, 3, int(new_card.sum()))
    nb1 = np.minimum(rng.poisson(1.5, n) + (rng.random(n) < 0.01) * 12, nb30 + 1)
    avg30 = np.round(rng.lognormal(3.8, 0.5, n), 2)
    risk7 = np.where(rng.random(n) < 0.02, rng.uniform(0.1, 0.6, n), 0.0)
    hour = rng.integers(0, 24, n)
    terminal = rng.integers(0, 10_000, n).astype(str)
    terminal[rng.random(n) < 0.001] = "9001"
    out = []
    for i in range(n):
        ctx: dict[str, Any] = {name: 0.0 for name in BASELINE_FEATURES}
        ctx.update(
            score=None if missing_score[i] else float(score[i]),
            amount=float(amount[i]), tx_amount=float(amount[i]), hour=int(hour[i]),
            is_weekend=bool(i % 7 >= 5), customer_id=str(i % 5000), terminal_id=terminal[i],
            tx_during_night=float(hour[i] <= 5),
            customer_id_nb_tx_1day_window=float(nb1[i]),
            customer_id_nb_tx_30day_window=float(nb30[i]),
            customer_id_avg_amount_30day_window=float(avg30[i]),
            terminal_id_nb_tx_7day_window=20.0, terminal_id_risk_7day_window=float(risk7[i]),
            terminal_id_nb_tx_30day_window=80.0, terminal_id_risk_30day_window=0.0,
        )
        out.append(ctx)
    return out


def time_evaluations(rule_set: RuleSet, ctxs: list[dict[str, Any]]) -> dict[str, Any]:
    evaluate = rule_set.evaluate
    for ctx in ctxs[: min(2000, len(ctxs))]:  # warm-up
        evaluate(ctx)
    clock = time.perf_counter_ns
    samples = []
    outcomes: dict[str, int] = {}
    started = time.perf_counter()
    for ctx in ctxs:
        t0 = clock()
        result = evaluate(ctx)
        samples.append(clock() - t0)
        outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
    wall = time.perf_counter() - started
    us = np.array(samples) / 1000.0
    return {
        "evaluations": len(ctxs),
        "p50_us": round(float(np.percentile(us, 50)), 2),
        "p99_us": round(float(np.percentile(us, 99)), 2),
        "p999_us": round(float(np.percentile(us, 99.9)), 2),
        "mean_us": round(float(us.mean()), 2),
        "evaluations_per_second": round(len(ctxs) / wall),
        "outcomes": outcomes,
    }


def time_load(runs: int = 20) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        load_rule_set(DEFAULT_RULES)
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1000, 2)


def time_backtest(rule_set: RuleSet, ctxs: list[dict[str, Any]]) -> dict[str, Any]:
    frame = pd.DataFrame(ctxs)
    frame["transaction_id"] = np.arange(len(frame))
    frame["outcome"] = "approve"
    frame["is_fraud"] = (frame["score"].fillna(0) > 0.9).astype(int)
    t0 = time.perf_counter()
    report = backtest(rule_set, frame)
    seconds = time.perf_counter() - t0
    return {"rows": len(frame), "seconds": round(seconds, 3),
            "us_per_row": round(seconds / len(frame) * 1e6, 2), "changed": report.changed}


def markdown(result: dict[str, Any]) -> str:
    m, d, f, b = result["machine"], result["default"], result["fallback"], result["backtest"]
    return "\n".join([
        SECTION,
        "",
        f"Measured {m['date']} with `python bench/rules.py` on {m['nproc']} cores ({m['cpu']}), "
        f"Python {m['python']}, 1-minute load average {m['load_average_1m']} at start. "
        "One evaluation = build the input env, evaluate every rule in DAG order, resolve "
        "the outcome and the fired list (what `RuleSet.evaluate` does per request).",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        f"| default rule set ({result['rules']} rules, DAG), one evaluation "
        f"({d['evaluations']:,} contexts) | p50 {d['p50_us']} µs, p99 {d['p99_us']} µs, "
        f"p99.9 {d['p999_us']} µs (mean {d['mean_us']} µs) | tens of µs (request p99 ≤ 10 ms) |",
        f"| same, evaluations / s, one core | {d['evaluations_per_second']:,} | |",
        f"| fallback rule set, one evaluation | p50 {f['p50_us']} µs, p99 {f['p99_us']} µs | |",
        f"| load default.yaml (parse, type-check, compile, {result['tests']} embedded tests) "
        f"| {result['load_ms']} ms | |",
        f"| backtest, {b['rows']:,} logged rows | {b['seconds']} s ({b['us_per_row']} µs/row) "
        "| seconds, not minutes |",
        "",
        f"Default outcomes over the random contexts: {d['outcomes']}.",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run, no docs update")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--evaluations", type=int, default=None,
                        help="contexts to evaluate (default 200,000; quick 20,000)")
    parser.add_argument("--no-docs", action="store_true", help="do not update the docs")
    args = parser.parse_args()
    n = args.evaluations or (20_000 if args.quick else 200_000)
    result: dict[str, Any] = {"benchmark": "rules", "quick": args.quick, "machine": machine()}
    default = load_rule_set(DEFAULT_RULES)
    fallback = load_rule_set(FALLBACK_RULES)
    ctxs = contexts(n)
    result["rules"] = len(default.rules)
    result["tests"] = len(default.tests)
    result["load_ms"] = time_load(5 if args.quick else 20)
    result["default"] = time_evaluations(default, ctxs)
    result["fallback"] = time_evaluations(fallback, ctxs[: max(n // 4, 1000)])
    result["backtest"] = time_backtest(default, ctxs[: 10_000 if args.quick else 100_000])
    result["us_per_evaluation"] = result["default"]["mean_us"]
    if not args.quick and not args.no_docs:
        write_section(SECTION, markdown(result), DOCS)
    if not args.json:
        print(markdown(result))
    else:
        print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
