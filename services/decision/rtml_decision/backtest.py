"""``python -m rtml_decision.backtest``: backtest a candidate rule set offline.

Over a Parquet export of logged decisions (columns ``transaction_id``,
``outcome``, the rule inputs, optionally ``is_fraud``) or over the Cassandra
decision log (``--from-log``, newest ``--limit`` decisions). Prints the
report as Markdown (default) or JSON; exit 2 for an invalid rule set.
``--feature-set NAME`` checks the rule sets against that set's request
fields and features, as the service serving it does (without it: the
standard inputs, ``docs/rules.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from rtml_decision.rules import RuleInputs, RuleSetError, backtest, load_rule_set, request_inputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtml_decision.backtest",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=Path, required=True, help="candidate rule set (YAML)")
    parser.add_argument("--current", type=Path, help="rule set to compare with")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--decisions", type=Path, help="Parquet export of logged decisions")
    source.add_argument("--from-log", action="store_true",
                        help="read the Cassandra decision log (RTML_CASSANDRA_*)")
    parser.add_argument("--limit", type=int, default=100_000)
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--feature-set", help="check the rules against this served set's "
                                              "request fields and features")
    args = parser.parse_args(argv)
    inputs: RuleInputs | None = None
    if args.feature_set:
        from rtml_features.baseline import get_feature_set

        try:
            served = get_feature_set(args.feature_set)
        except KeyError as error:
            print(f"unknown feature set: {error}", file=sys.stderr)
            return 2
        inputs = request_inputs(served.schema, served.names, served.name)
    try:
        candidate = load_rule_set(args.rules, inputs=inputs)
        current = load_rule_set(args.current, inputs=inputs) if args.current else None
    except RuleSetError as error:
        print(f"invalid rule set: {error}", file=sys.stderr)
        return 2
    if args.decisions is not None:
        frame = pd.read_parquet(args.decisions)
    else:
        from rtml_common.config import CassandraSettings
        from rtml_decision.decision_log.cassandra import CassandraDecisionLog

        log = CassandraDecisionLog.from_settings(CassandraSettings())
        try:
            frame = log.read_frame(limit=args.limit)
        finally:
            log.close()
    report = backtest(candidate, frame, current=current)
    print(json.dumps(report.to_dict(), default=str) if args.json else report.to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
