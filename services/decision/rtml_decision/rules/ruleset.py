"""Rule sets: load a YAML rule file, validate it completely, evaluate it fast.

Loading does everything that can fail, once: YAML syntax, the file's schema
(unknown keys are errors, not ignored), names and types of every
expression, the rule DAG (a cycle is refused with the cycle spelled out), and
the embedded tests, which must all pass. A :class:`RuleSet` that exists is
therefore valid, and :meth:`RuleSet.evaluate` can only fail on a context that
lacks a required input (:class:`MissingInputError`); a UDF that raises makes
its rule not fire and is reported in :attr:`RuleResult.errors`.

Decision semantics (``docs/rules.md``): rules are evaluated in topological
order; every rule's value is a bool. The outcome is that of the fired rule
with an outcome that ranks first by (priority descending, severity
decline > review > approve, file order); if none fired, ``default_outcome``.
``fired`` lists every fired rule, flags (rules without an outcome, reported
with ``outcome=None``) included, in that same rank order.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtml_common import strict_yaml
from rtml_common.events import FiredRule, Outcome
from rtml_common.strict_yaml import line_of
from rtml_decision.rules.expr import Compiled, ExpressionCompiler, Fn, _element_type
from rtml_decision.rules.inputs import RuleInputs, standard
from rtml_decision.rules.types import (
    BOOL,
    ExpressionError,
    MissingInputError,
    RuleSetError,
    Type,
    parse_type,
)
from rtml_decision.rules.udfs import UdfRegistry, default_udfs

#: Tie-break between rules of equal priority: the most severe outcome wins.
SEVERITY = {Outcome.DECLINE: 3, Outcome.REVIEW: 2, Outcome.APPROVE: 1}

#: Largest accepted rule file (bytes of text).
MAX_TEXT = 1_000_000
#: Failing embedded tests listed in the refusal (the count is always given).
MAX_REPORTED_FAILURES = 20

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TOP_KEYS = {"name", "version", "description", "default_outcome", "inputs", "lists", "rules",
             "test_defaults", "tests"}
_RULE_KEYS = {"name", "when", "outcome", "reason", "priority", "description"}
_TEST_KEYS = {"name", "input", "expect", "description"}
_EXPECT_KEYS = {"outcome", "fired", "fired_exactly", "not_fired"}


# -- the model ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: a named boolean condition, with an outcome unless it is a flag."""

    name: str
    when: str
    outcome: Outcome | None
    reason: str
    priority: int
    description: str
    line: int
    #: Other rules this rule reads (its DAG edges) and the inputs it reads.
    rule_refs: frozenset[str]
    input_refs: frozenset[str]
    compiled: Compiled = field(repr=False, compare=False)

    @property
    def is_flag(self) -> bool:
        return self.outcome is None

    def fired_rule(self) -> FiredRule:
        return FiredRule(rule=self.name, reason_code=self.reason, outcome=self.outcome)


@dataclass(frozen=True, slots=True)
class RuleError:
    """A rule whose evaluation raised (inside a UDF): it counted as not fired."""

    rule: str
    error: str


class RuleResult:
    """What a rule set decided for one context."""

    __slots__ = ("_rule_names", "decided_by", "env", "errors", "fired", "outcome")

    def __init__(self, outcome: Outcome, fired: list[FiredRule], env: dict[str, Any],
                 errors: list[RuleError], decided_by: str | None,
                 rule_names: tuple[str, ...]) -> None:
        self.outcome = outcome
        #: Fired rules (flags included, ``outcome=None``), highest rank first.
        self.fired = fired
        #: Every input and rule value the evaluation saw.
        self.env = env
        self.errors = errors
        #: The rule whose outcome was taken; None when the default outcome applied.
        self.decided_by = decided_by
        self._rule_names = rule_names

    @property
    def values(self) -> dict[str, object]:
        """Every rule's value (True = fired), in evaluation order, for debugging."""
        return {name: self.env[name] for name in self._rule_names}

    @property
    def fired_names(self) -> list[str]:
        return [f.rule for f in self.fired]

    def __repr__(self) -> str:
        return (f"RuleResult(outcome={self.outcome.value!r}, fired={self.fired_names!r}, "
                f"errors={len(self.errors)})")


@dataclass(frozen=True, slots=True)
class RuleTest:
    """A test case embedded in the rule file."""

    name: str
    input: Mapping[str, Any]
    outcome: Outcome | None
    fired: frozenset[str]
    fired_exactly: frozenset[str] | None
    not_fired: frozenset[str]
    line: int


class RuleSet:
    """A validated, compiled rule set. Immutable; share it freely between requests."""

    def __init__(self, *, name: str, declared_version: str, content_hash: str,
                 description: str, default_outcome: Outcome, rules: list[Rule],
                 order: list[Rule], input_types: Mapping[str, Type],
                 lists: Mapping[str, frozenset[object]], tests: list[RuleTest],
                 source: str, udfs: UdfRegistry, document: Mapping[str, Any]) -> None:
        self.name = name
        self.declared_version = declared_version
        self.content_hash = content_hash
        #: ``<declared version>+<content hash>``: changes with any change to the file's content.
        self.version = f"{declared_version}+{content_hash}"
        self.description = description
        self.default_outcome = default_outcome
        #: Rules in file order, and in evaluation (topological) order.
        self.rules = tuple(rules)
        self.order = tuple(order)
        self.lists = dict(lists)
        self.tests = tuple(tests)
        self.source = source
        self.udfs = udfs
        #: The YAML document it was built from (plain, picklable data): how a worker
        #: process rebuilds it (:func:`rule_set_from_document`).
        self.document = document
        referenced = set().union(*(r.input_refs for r in rules)) if rules else set()
        #: Names of the inputs the rules read (features, ``score``, request fields).
        self.inputs: frozenset[str] = frozenset(referenced)
        self.input_types = {n: input_types[n] for n in sorted(referenced)}
        #: Inputs that must be present and not None in every context.
        self.required_inputs = tuple(n for n, t in self.input_types.items() if not t.optional)
        self._input_names = tuple(self.input_types)
        self._steps: tuple[tuple[str, Fn], ...] = tuple((r.name, r.compiled.fn) for r in order)
        self._rule_names = tuple(r.name for r in order)
        ranked = sorted(rules, key=lambda r: (-r.priority,
                                              -SEVERITY.get(r.outcome, 0) if r.outcome else 0,
                                              rules.index(r)))
        self._ranked = tuple((r.name, r.fired_rule(), r.outcome) for r in ranked)

    @property
    def uses_score(self) -> bool:
        return "score" in self.inputs

    def rule(self, name: str) -> Rule:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)

    def evaluate(self, context: Mapping[str, object]) -> RuleResult:
        """Decide for one context (input name -> value; extra keys are ignored).

        Optional inputs (``score``, ``terminal_id``) may be absent or None;
        a required input absent or None raises :class:`MissingInputError`.
        """
        get = context.get
        env = {name: get(name) for name in self._input_names}
        for name in self.required_inputs:
            if env[name] is None:
                raise MissingInputError([n for n in self.required_inputs if env[n] is None])
        errors: list[RuleError] = []
        for name, fn in self._steps:
            try:
                env[name] = True if fn(env) else False  # noqa: SIM210 (truthiness, not bool())
            except Exception as exc:  # a UDF failed: the rule does not fire
                env[name] = False
                errors.append(RuleError(name, f"{type(exc).__name__}: {exc}"))
        fired: list[FiredRule] = []
        outcome: Outcome | None = None
        decided_by: str | None = None
        for name, fired_rule, rule_outcome in self._ranked:
            if env[name]:
                fired.append(fired_rule)
                if outcome is None and rule_outcome is not None:
                    outcome, decided_by = rule_outcome, name
        return RuleResult(outcome or self.default_outcome, fired, env, errors, decided_by,
                          self._rule_names)

    def run_tests(self) -> list[str]:
        """Run the embedded tests; one message per failing test (empty: all pass)."""
        failures = []
        for test in self.tests:
            problem = self._run_test(test)
            if problem:
                failures.append(f"test {test.name!r} (line {test.line}) failed: {problem}")
        return failures

    def _run_test(self, test: RuleTest) -> str | None:
        try:
            result = self.evaluate(test.input)
        except MissingInputError as exc:
            return f"{exc} (add them to the test's input or to test_defaults)"
        fired = set(result.fired_names)
        got = f"got outcome {result.outcome.value}, fired [{', '.join(result.fired_names)}]"
        problems = []
        if result.errors:
            problems.append("rule errors: " + "; ".join(f"{e.rule}: {e.error}"
                                                         for e in result.errors))
        if test.outcome is not None and result.outcome != test.outcome:
            problems.append(f"expected outcome {test.outcome.value}")
        if test.fired - fired:
            problems.append(f"expected fired {sorted(test.fired - fired)}")
        if test.fired_exactly is not None and fired != test.fired_exactly:
            problems.append(f"expected fired exactly {sorted(test.fired_exactly)}")
        if test.not_fired & fired:
            problems.append(f"expected not fired {sorted(test.not_fired & fired)}")
        return f"{'; '.join(problems)}; {got}" if problems else None

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (admin API, logs)."""
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "default_outcome": self.default_outcome.value,
            "inputs": {n: str(t) for n, t in self.input_types.items()},
            "rules": [{"name": r.name, "when": r.when, "priority": r.priority,
                       "outcome": r.outcome.value if r.outcome else None, "reason": r.reason,
                       "depends_on": sorted(r.rule_refs)} for r in self.rules],
            "tests": len(self.tests),
        }

    def __repr__(self) -> str:
        return f"RuleSet({self.name!r}, version={self.version!r}, rules={len(self.rules)})"


# -- loading --------------------------------------------------------------------------------


def load_rule_set(path: Path | str, udfs: UdfRegistry | None = None,
                  inputs: RuleInputs | None = None) -> RuleSet:
    """Load, validate and test a rule file; :class:`RuleSetError` names what is wrong.

    ``inputs``: what the rules may read (:func:`rtml_decision.rules.inputs.request_inputs`
    of the served schema and feature set); the legacy standard inputs when not given.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleSetError(f"{path}: cannot read rule file: {exc}") from None
    return parse_rule_set(text, source=str(path), udfs=udfs, inputs=inputs)


def parse_rule_set(text: str, source: str = "<upload>",
                   udfs: UdfRegistry | None = None,
                   inputs: RuleInputs | None = None) -> RuleSet:
    """Like :func:`load_rule_set`, from the file's text (e.g. an uploaded body)."""
    builder = _Builder(source, udfs if udfs is not None else default_udfs(), inputs)
    return builder.build(builder.document(text))


def rule_set_document(text: str, source: str = "<upload>") -> dict[str, Any]:
    """The YAML document of a rule file (plain data, picklable), after the YAML checks only."""
    return _Builder(source, default_udfs()).document(text)


def rule_set_from_document(document: dict[str, Any], source: str = "<upload>",
                           udfs: UdfRegistry | None = None, run_tests: bool = True,
                           inputs: RuleInputs | None = None) -> RuleSet:
    """The rule set of a document from :func:`rule_set_document`.

    ``run_tests=False`` is for a document already fully validated elsewhere
    (the upload's worker process ran its tests): compiling costs ~0.2 ms a
    rule, the embedded tests can cost minutes.
    """
    builder = _Builder(source, udfs if udfs is not None else default_udfs(), inputs)
    return builder.build(document, run_tests=run_tests)


class _Builder:
    def __init__(self, source: str, udfs: UdfRegistry, inputs: RuleInputs | None = None) -> None:
        self.source = source
        self.udfs = udfs
        self.env = inputs if inputs is not None else standard()

    def error(self, message: str, line: int = 0) -> RuleSetError:
        where = f"{self.source}:{line}" if line else self.source
        return RuleSetError(f"{where}: {message}")

    def document(self, text: str) -> Any:
        if len(text) > MAX_TEXT:
            raise self.error(f"rule file larger than {MAX_TEXT:,} characters")
        try:
            return strict_yaml.load(text)
        except strict_yaml.YamlError as exc:
            raise self.error(f"invalid YAML: {exc.problem}", exc.line) from None

    def build(self, doc: Any, run_tests: bool = True) -> RuleSet:
        if not isinstance(doc, dict):
            raise self.error("a rule file is a YAML mapping with name, version and rules")
        self.keys(doc, _TOP_KEYS, "the rule file")
        for key in ("name", "version", "rules"):
            if key not in doc:
                raise self.error(f"missing top-level key {key!r}")
        name = doc["name"]
        if not isinstance(name, str) or not name.strip():
            raise self.error("name must be a non-empty string")
        version = doc["version"]
        if isinstance(version, bool) or not isinstance(version, int | float | str) \
                or not str(version).strip() \
                or (isinstance(version, float) and not math.isfinite(version)):
            raise self.error("version must be a finite number or a non-empty string")
        description = doc.get("description", "")
        if not isinstance(description, str):
            raise self.error("description must be a string")
        default_outcome = self.outcome(doc.get("default_outcome", "approve"), "default_outcome",
                                       line_of(doc))
        assert default_outcome is not None
        input_types = self.inputs(doc.get("inputs") or {})
        lists = self.lists(doc.get("lists") or {})
        rules, order = self.rules(doc["rules"], input_types, lists)
        tests = self.tests(doc.get("tests") or [], doc.get("test_defaults") or {},
                           input_types, {r.name for r in rules})
        canonical = json.dumps(doc, sort_keys=True, default=str, separators=(",", ":"))
        content_hash = hashlib.sha256(canonical.encode()).hexdigest()[:8]
        rule_set = RuleSet(name=name.strip(), declared_version=str(version).strip(),
                           content_hash=content_hash, description=description,
                           default_outcome=default_outcome, rules=rules, order=order,
                           input_types=input_types, lists=lists, tests=tests,
                           source=self.source, udfs=self.udfs, document=doc)
        failures = rule_set.run_tests() if run_tests else []
        if failures:
            shown = failures[:MAX_REPORTED_FAILURES]
            more = len(failures) - len(shown)
            raise self.error(f"{len(failures)} of {len(tests)} embedded test(s) failed:\n  "
                             + "\n  ".join(shown) + (f"\n  ... and {more} more" if more else ""))
        return rule_set

    def keys(self, mapping: Mapping[str, Any], allowed: set[str], what: str) -> None:
        unknown = sorted(set(map(str, mapping)) - allowed)
        if unknown:
            raise self.error(f"unknown key(s) {', '.join(unknown)} in {what}; "
                             f"allowed: {', '.join(sorted(allowed))}", line_of(mapping))

    def outcome(self, value: object, what: str, line: int) -> Outcome | None:
        if value is None:
            return None
        try:
            return Outcome(str(value).strip().lower())
        except ValueError:
            known = ", ".join(o.value for o in Outcome)
            raise self.error(f"{what}: unknown outcome {value!r}; known: {known}", line) from None

    def inputs(self, section: object) -> dict[str, Type]:
        if not isinstance(section, dict):
            raise self.error("inputs must be a mapping name -> type (e.g. mcc: str)")
        types = dict(self.env.types)
        for name, spec in section.items():
            if not isinstance(name, str) or not name.isidentifier() or name.startswith("_") \
                    or keyword.iskeyword(name):
                raise self.error(f"input name {name!r} must be an identifier", line_of(section))
            if name in self.env.unreadable:
                raise self.error(f"input {name!r}: {self.env.unreadable[name]}",
                                 line_of(section))
            try:
                declared = parse_type(str(spec))
            except ValueError as exc:
                raise self.error(f"input {name!r}: {exc}", line_of(section)) from None
            if declared.kind not in ("number", "bool", "str"):
                raise self.error(f"input {name!r}: type must be number, bool or str",
                                 line_of(section))
            fixed = types.get(name) if name in self.env.declared else None
            if fixed is not None:
                if declared.kind != fixed.kind:
                    raise self.error(f"input {name!r}: declared {declared} here but it is "
                                     f"{fixed} in {self.env.scope} (leave it out: it needs "
                                     "no declaration)", line_of(section))
                continue  # the declaration's own type (optionality, categories) stands
            types[name] = declared
        return types

    def lists(self, section: object) -> dict[str, frozenset[object]]:
        if not isinstance(section, dict):
            raise self.error("lists must be a mapping name -> list of values")
        lists = dict(self.udfs.lists)
        for name, values in section.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise self.error(f"list name {name!r} must be an identifier", line_of(section))
            if not isinstance(values, list) or any(
                    isinstance(v, dict | list) or v is None for v in values):
                raise self.error(f"list {name!r} must be a list of strings or numbers",
                                 line_of(section))
            frozen = frozenset(values)
            try:
                _element_type(frozen)
            except ExpressionError as exc:
                raise self.error(f"list {name!r}: {exc} (quote ids: '123')",
                                 line_of(section)) from None
            lists[name] = frozen
        return lists

    def rules(self, section: object, input_types: Mapping[str, Type],
              lists: Mapping[str, frozenset[object]]) -> tuple[list[Rule], list[Rule]]:
        if not isinstance(section, list) or not section:
            raise self.error("rules must be a non-empty list")
        raw: dict[str, Mapping[str, Any]] = {}
        for item in section:
            if not isinstance(item, dict):
                raise self.error("each rule is a mapping with name and when", line_of(section))
            self.keys(item, _RULE_KEYS, f"rule {item.get('name', '?')!r}")
            rule_name = item.get("name")
            if not isinstance(rule_name, str) or not _NAME_RE.match(rule_name) \
                    or keyword.iskeyword(rule_name):
                raise self.error(f"rule name {rule_name!r} must be lower_snake_case "
                                 "(a-z, 0-9, _; at most 64 characters)", line_of(item))
            if rule_name in raw:
                raise self.error(f"duplicate rule name {rule_name!r} (first at line "
                                 f"{line_of(raw[rule_name])})", line_of(item))
            for clash, what in ((input_types, "an input"), (lists, "a list")):
                if rule_name in clash:
                    raise self.error(f"rule name {rule_name!r} is already {what}", line_of(item))
            if self.udfs.get(rule_name) is not None:
                raise self.error(f"rule name {rule_name!r} is already a function", line_of(item))
            raw[rule_name] = item
        names: dict[str, Type] = dict(input_types)
        names.update({rule_name: BOOL for rule_name in raw})
        compiler = ExpressionCompiler(names, self.udfs, lists, self.env.unreadable,
                                      self.env.scope if self.env.declared else None)
        rules = [self.rule(item, compiler, set(raw)) for item in raw.values()]
        return rules, self.topological(rules)

    def rule(self, item: Mapping[str, Any], compiler: ExpressionCompiler,
             rule_names: set[str]) -> Rule:
        name, line = item["name"], line_of(item)
        where = f"rule {name!r}"
        when = item.get("when")
        if isinstance(when, bool):
            when = str(when)
        if not isinstance(when, str) or not when.strip():
            raise self.error(f"{where}: 'when' must be an expression string", line)
        try:
            compiled = compiler.compile(when)
        except ExpressionError as exc:
            col = f" (column {exc.col + 1})" if exc.col is not None else ""
            raise self.error(f"{where}: {exc}{col} in `{' '.join(when.split())}`",
                             line) from None
        if compiled.type.kind != "bool":
            raise self.error(f"{where}: 'when' must be a condition (bool), got "
                             f"{compiled.type}", line)
        outcome = self.outcome(item.get("outcome"), where, line)
        reason = item.get("reason", name.upper())
        if not isinstance(reason, str) or not reason.strip():
            raise self.error(f"{where}: reason must be a non-empty string", line)
        priority = item.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise self.error(f"{where}: priority must be an integer", line)
        description = item.get("description", "")
        if not isinstance(description, str):
            raise self.error(f"{where}: description must be a string", line)
        return Rule(name=name, when=" ".join(when.split()), outcome=outcome,
                    reason=reason.strip(), priority=priority, description=description,
                    line=line, rule_refs=compiled.refs & rule_names,
                    input_refs=compiled.refs - rule_names, compiled=compiled)

    def topological(self, rules: list[Rule]) -> list[Rule]:
        """Dependencies first, file order otherwise; a cycle is an error naming it."""
        by_name = {r.name: r for r in rules}
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done
        order: list[Rule] = []

        def visit(rule: Rule, stack: list[str]) -> None:
            state[rule.name] = 1
            stack.append(rule.name)
            for dep in sorted(rule.rule_refs, key=lambda n: rules.index(by_name[n])):
                if state.get(dep) == 1:
                    cycle = [*stack[stack.index(dep):], dep]
                    raise self.error("rules form a cycle: " + " -> ".join(cycle),
                                     by_name[dep].line)
                if dep not in state:
                    visit(by_name[dep], stack)
            stack.pop()
            state[rule.name] = 2
            order.append(rule)

        for rule in rules:
            if rule.name not in state:
                visit(rule, [])
        return order

    def tests(self, section: object, defaults: object, input_types: Mapping[str, Type],
              rule_names: set[str]) -> list[RuleTest]:
        if not isinstance(section, list):
            raise self.error("tests must be a list")
        if not isinstance(defaults, dict):
            raise self.error("test_defaults must be a mapping input -> value")
        self.known_inputs(defaults, input_types, "test_defaults")
        tests, seen = [], set()
        for item in section:
            if not isinstance(item, dict):
                raise self.error("each test is a mapping with name, input and expect",
                                 line_of(section))
            self.keys(item, _TEST_KEYS, f"test {item.get('name', '?')!r}")
            name, line = item.get("name"), line_of(item)
            if not isinstance(name, str) or not name.strip():
                raise self.error("each test needs a name", line)
            if name in seen:
                raise self.error(f"duplicate test name {name!r}", line)
            seen.add(name)
            where = f"test {name!r}"
            given = item.get("input") or {}
            if not isinstance(given, dict):
                raise self.error(f"{where}: input must be a mapping", line)
            self.known_inputs(given, input_types, where)
            expect = item.get("expect")
            if not isinstance(expect, dict) or not expect:
                raise self.error(f"{where}: expect must name an outcome and/or fired rules",
                                 line)
            self.keys(expect, _EXPECT_KEYS, f"{where} expect")
            exactly = expect.get("fired_exactly")
            tests.append(RuleTest(
                name=name, input={**defaults, **given},
                outcome=self.outcome(expect.get("outcome"), where, line),
                fired=self.rule_list(expect.get("fired"), rule_names, where, line),
                fired_exactly=None if exactly is None else
                self.rule_list(exactly, rule_names, where, line),
                not_fired=self.rule_list(expect.get("not_fired"), rule_names, where, line),
                line=line))
        return tests

    def known_inputs(self, given: Mapping[str, Any], input_types: Mapping[str, Type],
                     where: str) -> None:
        unknown = sorted(set(given) - set(input_types))
        if unknown:
            raise self.error(f"{where}: unknown input(s) {', '.join(map(str, unknown))}",
                             line_of(given))
        for name, value in given.items():
            categories = input_types[name].categories
            if categories is not None and value is not None and value not in categories:
                raise self.error(f"{where}: input {name}: {value!r} is not a category of "
                                 f"{name}; allowed: {', '.join(categories)}", line_of(given))

    def rule_list(self, value: object, rule_names: set[str], where: str,
                  line: int) -> frozenset[str]:
        if value is None:
            return frozenset()
        names: Iterable[object] = [value] if isinstance(value, str) else value \
            if isinstance(value, list) else [None]
        result = frozenset(str(n) for n in names)
        unknown = sorted(result - rule_names)
        if unknown:
            raise self.error(f"{where}: unknown rule(s) {', '.join(unknown)} in expect", line)
        return result
