"""The rules DSL (issue #6): readable YAML rule sets, compiled once, evaluated in microseconds.

>>> rs = parse_rule_set('''
... name: demo
... version: 1
... rules:
...   - {name: big, when: "amount >= 1000", outcome: review, reason: LARGE_AMOUNT}
... ''')
>>> rs.evaluate({"amount": 1500.0}).outcome.value
'review'

See ``docs/rules.md`` for the file format and semantics; the built-in rule
sets are in ``services/decision/rtml_decision/rule_sets/`` (:data:`DEFAULT_RULES`,
:data:`FALLBACK_RULES`).
"""

from pathlib import Path

from rtml_decision.rules.backtest import Backtest, backtest
from rtml_decision.rules.inputs import InputsError, RuleInputs, request_inputs
from rtml_decision.rules.ruleset import (
    Rule,
    RuleError,
    RuleResult,
    RuleSet,
    RuleTest,
    load_rule_set,
    parse_rule_set,
)
from rtml_decision.rules.types import (
    BASELINE_FEATURES,
    MissingInputError,
    RuleSetError,
    Type,
    standard_inputs,
)
from rtml_decision.rules.udfs import Udf, UdfRegistry, default_udfs

#: The folder of the built-in rule files (package data: ``rtml_decision/rule_sets``).
RULES_DIR = Path(__file__).resolve().parents[1] / "rule_sets"
#: The default rule set (model score + baseline features).
DEFAULT_RULES = RULES_DIR / "default.yaml"
#: The degraded-mode rule set (request fields only: no score, no features).
FALLBACK_RULES = RULES_DIR / "fallback.yaml"

__all__ = [
    "BASELINE_FEATURES",
    "DEFAULT_RULES",
    "FALLBACK_RULES",
    "RULES_DIR",
    "Backtest",
    "InputsError",
    "MissingInputError",
    "Rule",
    "RuleError",
    "RuleInputs",
    "RuleResult",
    "RuleSet",
    "RuleSetError",
    "RuleTest",
    "Type",
    "Udf",
    "UdfRegistry",
    "backtest",
    "default_udfs",
    "load_rule_set",
    "parse_rule_set",
    "request_inputs",
    "standard_inputs",
]
