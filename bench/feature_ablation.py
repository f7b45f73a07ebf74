"""Which features earn their place: the ``extended`` set with each of its additions
removed, the baseline, and the candidates that did not make it added back.

Every configuration trains XGBoost with the same parameters (by default those
the default model selection chose for ``extended``; ``--params`` for others)
through the training pipeline on the standard split, and reports the test
figures plus the mean over 4 prequential folds (each fold one test week
earlier: a single week moves AP by several points, so the fold mean is the
figure to judge by). Calibration is off here: it does not change rankings.

``--quick``: only the full set, the baseline and one removal. ``--json`` prints
one JSON object last; a full run rewrites the ``## Feature ablation`` section
of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, report

from rtml_features.baseline import BASELINE, CUSTOMER, LABEL_DELAY, REGISTRY, TERMINAL
from rtml_features.definitions import Agg, Feature, FeatureSet, WindowAggregate
from rtml_features.extended import EXTENDED
from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_training.config import TrainConfig
from rtml_training.metrics import mean_of
from rtml_training.params import load_params_file
from rtml_training.pipeline import train

SECTION = "## Feature ablation"
#: What the default search chose for ``extended`` (docs/benchmarks.md "Model selection").
SELECTED_PARAMS: dict[str, Any] = {
    "n_estimators": 61, "max_depth": 7, "learning_rate": 0.1177, "min_child_weight": 1.146,
    "subsample": 0.9563, "colsample_bytree": 0.899, "reg_lambda": 3.603, "gamma": 4.72,
    "max_delta_step": 5.43, "max_bin": 1004}

#: The extended set's additions to the baseline, each removed on its own.
REMOVALS: list[str] = [f.name for f in EXTENDED.features[len(BASELINE.features):]]
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
WEEK, MONTH = 7 * DAY, 30 * DAY
DELAYED_MEAN = WindowAggregate("customer_id_avg_amount_30day_window_delayed", CUSTOMER,
                               Agg.MEAN, MONTH, field="amount", label_delay=LABEL_DELAY)
KNOWN_FRAUDS = WindowAggregate("customer_id_nb_fraud_30day_window", CUSTOMER, Agg.SUM, MONTH,
                               field="is_fraud", label_delay=LABEL_DELAY)
TERMINAL_MEAN = WindowAggregate("terminal_id_avg_amount_7day_window", TERMINAL, Agg.MEAN, WEEK,
                                field="amount")
#: Tried and left out of ``extended`` (the first three were in its first version).
CANDIDATES: dict[str, list[Feature]] = {
    "customer mean amount a label delay back": [DELAYED_MEAN],
    "customer known frauds (30 days, a label delay back)": [KNOWN_FRAUDS],
    "terminal 7-day mean amount": [TERMINAL_MEAN],
    "all three above (the set's first version, 21)": [DELAYED_MEAN, KNOWN_FRAUDS, TERMINAL_MEAN],
    "customer short windows (1 h / 6 h counts, 1-day sum)": [
        WindowAggregate("customer_id_nb_tx_1hour_window", CUSTOMER, Agg.COUNT, HOUR),
        WindowAggregate("customer_id_nb_tx_6hour_window", CUSTOMER, Agg.COUNT, 6 * HOUR),
        WindowAggregate("customer_id_sum_amount_1day_window", CUSTOMER, Agg.SUM, DAY,
                        field="amount")],
    "terminal 1-day max amount and count (no delay)": [
        WindowAggregate("terminal_id_max_amount_1day_window", TERMINAL, Agg.MAX, DAY,
                        field="amount"),
        WindowAggregate("terminal_id_nb_tx_1day_window_now", TERMINAL, Agg.COUNT, DAY)],
}


def _register(name: str, features: list[Feature]) -> str:
    REGISTRY[name] = FeatureSet(name, features)
    return name


def configurations(quick: bool) -> list[tuple[str, str]]:
    """(label, registered feature set name) of every configuration measured."""
    out = [(f"extended ({len(EXTENDED.names)})", "extended"),
           (f"baseline ({len(BASELINE.names)})", "baseline")]
    for i, name in enumerate(REMOVALS):
        kept = [f for f in EXTENDED.features if f.name != name]
        out.append((f"extended without {name}", _register(f"ablation_minus_{i}", kept)))
        if quick:
            return out
    for i, (group, features) in enumerate(CANDIDATES.items()):
        out.append((f"extended with {group}",
                    _register(f"ablation_candidate_{i}", [*EXTENDED.features, *features])))
    return out


def run(data: Path, label: str, feature_set: str, params: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    result = train(TrainConfig(data=data, feature_set=feature_set, folds=4,
                               calibration="none", xgb_params=params))
    folds = mean_of(result.fold_metrics)
    return {"configuration": label, "features": len(result.feature_set.names),
            "test": {"auc": round(result.metrics.auc, 4), "ap": round(result.metrics.ap, 4),
                     "cp_at_100": round(result.metrics.cp_at_k, 4)},
            "folds_mean": {"auc": round(folds.auc, 4), "ap": round(folds.ap, 4),
                           "cp_at_100": round(folds.cp_at_k, 4)},
            "seconds": round(time.perf_counter() - started, 1)}


def markdown(result: dict[str, Any], command: str) -> str:
    m = result["machine"]
    params = ", ".join(f"{k}={v}" for k, v in result["params"].items())
    lines = [SECTION, "",
             f"{m['date']}, {m['nproc']} cores ({m['cpu']}), Python {m['python']}; "
             f"`{command}`, one run. Default simulated data, the handbook's split; XGBoost "
             f"with {params} on top of the written-down defaults (the default selection's "
             "choice for `extended`), no calibration; mean over 4 prequential folds (test "
             "weeks from 2018-08-08 back to 07-18) beside the main test week. Differences "
             "below ~0.01 in the fold mean are within week-to-week noise.", "",
             "| configuration | features | test AUC / AP / CP@100 | 4-fold mean AUC / AP / "
             "CP@100 | Δ fold-mean AP vs extended |", "|---|---:|---|---|---:|"]
    reference = result["runs"][0]["folds_mean"]["ap"]
    for r in result["runs"]:
        t, f = r["test"], r["folds_mean"]
        lines.append(f"| {r['configuration']} | {r['features']} | {t['auc']:.3f} / {t['ap']:.3f}"
                     f" / {t['cp_at_100']:.3f} | {f['auc']:.3f} / {f['ap']:.3f} / "
                     f"{f['cp_at_100']:.3f} | {f['ap'] - reference:+.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--params", type=Path, default=None,
                        help="XGBoost parameter file (default: the selection's choice)")
    args = parser.parse_args(argv)
    params = (load_params_file(args.params).for_kind("xgboost") if args.params
              else SELECTED_PARAMS)
    command = "python bench/feature_ablation.py" + (" --quick" if args.quick else "")
    about = machine()
    with tempfile.TemporaryDirectory(prefix="rtml-bench-ablation-") as tmp:
        data = args.data or write_dataset(simulate(SimulationConfig()), Path(tmp) / "data")
        runs = []
        for label, name in configurations(args.quick):
            runs.append(run(data, label, name, params))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    result = {"benchmark": "feature-ablation", "quick": args.quick, "machine": about,
              "params": params, "runs": runs}
    report(result, SECTION, markdown(result, command), quick=args.quick, as_json=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
