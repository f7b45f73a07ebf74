"""What the payments features buy on rich data: the handbook's 15 against the payments set.

Simulates a rich data set (``SimulationConfig(rich=RichMode())``: device, IP
address, merchant category, country and channel per payment, plus account
takeover, scenario 5, and card testing from one device, scenario 6), computes
the ``baseline`` (15) and the example ``payments`` (32) features with the
batch engine (point in time, labels 7 days late), trains the same XGBoost (the
training pipeline's written-down defaults) on each over the handbook's split
(train 2018-07-25..31, 7 days' delay, test 08-08..14, known-compromised cards
dropped from the test), and reports the test AUC / AP overall and, per fraud
scenario, the AP of telling that scenario's frauds from genuine payments
(the other scenarios' rows left out). Scenarios 5 and 6 are the point: the
15 handbook features barely see them.

``--quick``: 1,500 customers and 3,000 terminals (same density) instead of
5,000 x 10,000. ``--json`` prints one JSON object last; a full run rewrites
the ``## Rich features`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import average_precision_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, report

from rtml_features.baseline import BASELINE
from rtml_features.batch import compute_features
from rtml_features.definitions import FeatureSet
from rtml_simulator import RichMode, SimulationConfig, simulate
from rtml_simulator.frames import Dataset, frames_from_table
from rtml_simulator.io import transactions_table
from rtml_training.params import xgboost_params
from rtml_training.split import SplitConfig, make_split, period_bounds
from rtml_training.xgb_trainer import train_xgboost

SECTION = "## Rich features"
REPO = Path(__file__).resolve().parent.parent / "examples" / "feature_repos" / "payments"
SCENARIOS = {1: "amount > 220", 2: "compromised terminal", 3: "compromised card",
             5: "account takeover", 6: "card testing from one device"}
SEED = 0


def payments_set() -> FeatureSet:
    """The example repo's ``PAYMENTS`` (a feature repo is imported as one package)."""
    package = types.ModuleType("bench_payments_repo")
    package.__path__ = [str(REPO)]
    sys.modules.setdefault("bench_payments_repo", package)
    features: FeatureSet = importlib.import_module("bench_payments_repo.features").PAYMENTS
    return features


def rich_dataset(quick: bool) -> tuple[SimulationConfig, Dataset]:
    config = SimulationConfig(rich=RichMode(), seed=SEED)
    if quick:
        config = config.with_overrides(n_customers=1_500, n_terminals=3_000,
                                       radius=5.0 * (10_000 / 3_000) ** 0.5)
    return config, frames_from_table(transactions_table(simulate(config)))


def features(dataset: Dataset, feature_set: FeatureSet, split: SplitConfig) -> pd.DataFrame:
    """The split period's rows with their features (history cut at the test end)."""
    first, end = period_bounds(split)
    times = dataset.history["event_time"]
    in_period = ((times >= first) & (times < end)).to_numpy()
    before_end = (times < end).to_numpy()
    spine = dataset.history[in_period].assign(is_fraud=dataset.is_fraud[in_period],
                                              day=dataset.day[in_period],
                                              scenario=dataset.scenario[in_period])
    return compute_features(feature_set, spine, dataset.history[before_end],
                            dataset.labels[before_end])


def scores(frame: pd.DataFrame, feature_set: FeatureSet,
           split: SplitConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """Test rows and their scores from XGBoost trained on the split's training rows."""
    chosen = make_split(frame, split)
    names = feature_set.names
    booster = train_xgboost(frame.iloc[chosen.train], names,
                            params=xgboost_params({"random_state": SEED}))
    test = frame.iloc[chosen.test]
    matrix = xgb.DMatrix(test[names].to_numpy(dtype=np.float64), feature_names=list(names))
    return test, booster.predict(matrix)


def figures(test: pd.DataFrame, score: np.ndarray) -> dict[str, Any]:
    label = test["is_fraud"].to_numpy(dtype=bool)
    scenario = test["scenario"].to_numpy()
    out: dict[str, Any] = {"auc": round(float(roc_auc_score(label, score)), 4),
                           "ap": round(float(average_precision_score(label, score)), 4),
                           "per_scenario": {}}
    for s in SCENARIOS:
        rows = (scenario == 0) | (scenario == s)
        positives = int((scenario == s).sum())
        if positives:
            ap = average_precision_score(scenario[rows] == s, score[rows])
            out["per_scenario"][str(s)] = {"frauds": positives, "ap": round(float(ap), 4)}
    return out


def run(dataset: Dataset, feature_set: FeatureSet, split: SplitConfig) -> dict[str, Any]:
    started = time.perf_counter()
    frame = features(dataset, feature_set, split)
    computed = time.perf_counter()
    test, score = scores(frame, feature_set, split)
    return {"feature_set": feature_set.name, "features": len(feature_set.names),
            "test_rows": len(test), "test_frauds": int(test["is_fraud"].sum()),
            **figures(test, score),
            "feature_seconds": round(computed - started, 1),
            "train_seconds": round(time.perf_counter() - computed, 1)}


def markdown(result: dict[str, Any], command: str) -> str:
    m = result["machine"]
    runs = result["runs"]
    lines = [SECTION, "",
             f"{m['date']}, {m['nproc']} cores ({m['cpu']}), Python {m['python']}; "
             f"`{command}`, one run. Rich simulated data ({result['data']}), the handbook's "
             "split (train 2018-07-25..31, test 08-08..14), XGBoost with the written-down "
             "defaults, no calibration. Per scenario: AP of that scenario's frauds against "
             "genuine payments (other frauds left out); counts are test frauds.", "",
             "| scenario | test frauds | " + " | ".join(
                 f"{r['feature_set']} ({r['features']}) AP" for r in runs) + " |",
             "|---|---:|" + "---:|" * len(runs),
             "| all (AUC / AP) | " + f"{runs[0]['test_frauds']} | " + " | ".join(
                 f"{r['auc']:.3f} / {r['ap']:.3f}" for r in runs) + " |"]
    for s, name in SCENARIOS.items():
        cells = [r["per_scenario"].get(str(s)) for r in runs]
        if cells[0] is None:
            continue
        lines.append(f"| {s} {name} | {cells[0]['frauds']} | " + " | ".join(
            f"{c['ap']:.3f}" if c else "-" for c in cells) + " |")
    lines += ["", "Scenarios 5 and 6 are what the payments features exist for: the handbook's 15 "
              "see neither (AP near the base rate), the payments set ranks them well. One "
              "week of test frauds per scenario: expect a few hundredths of noise. Scenario 1 "
              "(every amount above 220 is a fraud) is ranked poorly by both: the written-down "
              "defaults' 256 histogram bins (`max_bin`) put the cut at 220 inside a bin "
              "shared with genuine amounts (checked: `max_bin` 4096 takes its AP from 0.07 "
              "to 0.42 on this data); model selection searches `max_bin`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    command = "python bench/rich_features.py" + (" --quick" if args.quick else "")
    about = machine()
    config, dataset = rich_dataset(args.quick)
    split = SplitConfig()
    runs = []
    for feature_set in (BASELINE, payments_set()):
        runs.append(run(dataset, feature_set, split))
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    data = (f"{config.n_customers:,} customers x {config.n_terminals:,} terminals x "
            f"{config.n_days} days, seed {config.seed}, {len(dataset):,} payments")
    result = {"benchmark": "rich-features", "quick": args.quick, "machine": about,
              "data": data, "runs": runs}
    report(result, SECTION, markdown(result, command), quick=args.quick, as_json=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
