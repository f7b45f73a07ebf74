"""The expression language: every accepted construct, every refused one, types and None."""

from __future__ import annotations

import pytest

from rtml_decision.rules import RuleSetError, UdfRegistry, default_udfs, parse_rule_set
from rtml_decision.rules.expr import ExpressionCompiler
from rtml_decision.rules.types import BOOL, NUMBER, STR, ExpressionError, Type

NAMES: dict[str, Type] = {
    "amount": NUMBER, "hour": NUMBER, "score": NUMBER.as_optional(), "is_weekend": BOOL,
    "customer_id": STR, "terminal_id": STR.as_optional(), "flag": BOOL,
}
BASE = {"amount": 100.0, "hour": 3, "score": 0.5, "is_weekend": False, "customer_id": "c1",
        "terminal_id": "t1", "flag": True}


def compiler() -> ExpressionCompiler:
    udfs = default_udfs()
    udfs.register_list("deny", ["t1", "t2"])
    udfs.register_list("hours", [1, 2, 3])
    return ExpressionCompiler(NAMES, udfs)


def ev(text: str, **overrides: object) -> object:
    return compiler().compile(text).fn({**BASE, **overrides})


def refused(text: str) -> str:
    with pytest.raises(ExpressionError) as info:
        compiler().compile(text)
    return str(info.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("amount > 50", True),
    ("amount >= 100 and hour < 3", False),
    ("amount >= 100 or hour < 3", True),
    ("amount > 1 and hour > 1 and flag", True),
    ("amount > 1000 or hour > 10 or flag", True),
    ("not is_weekend", True),
    ("1 <= hour <= 5", True),
    ("1 <= hour < 3", False),
    ("0 < amount < 200 < 300", True),
    ("hour in [1, 2, 3]", True),
    ("hour not in (1, 2, 3)", False),
    ("customer_id in {'c1', 'c2'}", True),
    ("customer_id == 'c1'", True),
    ("customer_id != 'c1'", False),
    ("is_weekend == False", True),
    ("amount * 2 - 50 == 150", True),
    ("amount / 4 + 1 == 26", True),
    ("-amount < 0", True),
    ("-1 < 0", True),
    ("hour in [-1, 3]", True),
    ("abs(-amount) == 100", True),
    ("min(amount, 5, 3) == 3", True),
    ("max(amount, 500) == 500", True),
    ("ratio(amount, 4) == 25", True),
    ("ratio(amount, 0) == 0", True),
    ("between(hour, 0, 5)", True),
    ("velocity(10, 1, 30, 30) == 10", True),
    ('in_list("deny", terminal_id)', True),
    ('in_list("hours", hour)', True),
    ("has(score) and score == 0.5", True),
    ("coalesce(score, 0.9) == 0.5", True),
    ("True", True),
    ("flag", True),
])
def test_accepted_constructs(text: str, expected: object) -> None:
    assert ev(text) == expected


@pytest.mark.parametrize(("text", "needle"), [
    ("().__class__", "attribute access"),
    ("amount.real > 1", "attribute access"),
    ("customer_id[0] == 'c'", "subscripts"),
    ("(lambda: 1)() == 1", "only registered functions"),
    ("lambda: True", "lambda"),
    ("[x for x in [1]] == 1", "comprehensions"),
    ("any(x for x in [1])", "unknown function"),
    ("f'{amount}' == '1'", "f-strings"),
    ("abs(x=amount) > 1", "keyword arguments"),
    ("max(*[1, 2]) > 1", "starred"),
    ("__import__('os')", "unknown function"),
    ("__builtins__", "names starting with _"),
    ("amoutn > 1", "unknown name 'amoutn'; did you mean amount"),
    ("eval('1') == 1", "unknown function 'eval'"),
    ("open('x')", "unknown function"),
    ("abs(amount, 1) > 0", "takes 1 argument(s), got 2"),
    ("ratio(amount) > 0", "takes 2 argument(s), got 1"),
    ("min(amount) > 0", "at least 2"),
    ("abs(customer_id) > 0", "argument 1 of abs() must be number, got str"),
    ("amount > 'x'", "cannot compare number > str"),
    ("customer_id < 'x'", "`<` needs numbers"),
    ("amount + customer_id > 1", "`+` needs numbers"),
    ("amount and flag", "`and` needs booleans"),
    ("not amount", "`not` needs a boolean"),
    ("-flag", "unary minus needs a number"),
    ("amount % 2 == 0", "Mod is not allowed"),
    ("amount ** 2 > 1", "Pow is not allowed"),
    ("amount // 2 > 1", "FloorDiv is not allowed"),
    ("amount << 2 > 1", "LShift is not allowed"),
    ("~hour > 1", "Invert is not allowed"),
    ("+hour > 1", "UAdd is not allowed"),
    ("score is None", "`is` is not allowed; use == or has(x)"),
    ("score == None", "None is not allowed; test presence with has(x)"),
    ("score is not 1", "`is not` is not allowed"),
    ("amount if flag else 0", "conditional expressions"),
    ("(x := 1) > 0", "assignment expressions"),
    ("{'a': 1} == 1", "dict literals"),
    ("[1, 2] == 1", "list literals are only allowed after `in`"),
    ("hour in [1, amount]", "list elements must be literals"),
    ("hour in ['1']", "list holds str, the value is number"),
    ("hour in customer_id", "needs a list literal"),
    ("b'x' == 1", "bytes literals"),
    ('in_list("nope", terminal_id)', "unknown list 'nope'"),
    ("in_list(deny, terminal_id)", "list name in quotes"),
    ('in_list("hours", customer_id)', "the list holds number"),
    ("abs > 1", "is a function"),
    ("amount >", "syntax error"),
    ("import os", "syntax error"),
    ("amount > 1; x", "syntax error"),
    ("not " * 100 + "flag", "nested deeper"),
    ("amount > " + "1 + " * 3000 + "1", "longer than"),
])
def test_refused_constructs(text: str, needle: str) -> None:
    assert needle in refused(text)


def test_none_score_comparisons_are_false() -> None:
    for text in ("score > 0.5", "score <= 0.5", "score == 0.5", "score != 0.5",
                 "score in [0.5]", "score not in [0.5]", "0 < score < 1", "score * 2 > 0",
                 "-score < 0", "abs(score) >= 0", "score > amount"):
        assert ev(text, score=None) is False or not ev(text, score=None), text
    assert ev("not (score > 0.5)", score=None) is True  # documented gotcha
    assert ev("has(score)", score=None) is False
    assert ev("coalesce(score, 0.9) > 0.8", score=None) is True
    assert ev("terminal_id != 't1'", terminal_id=None) is False
    assert not ev('in_list("deny", terminal_id)', terminal_id=None)


def test_division_by_zero_is_no_value() -> None:
    assert ev("amount / (hour - 3) > 1") is False
    assert ev("amount / (hour - 3) <= 1") is False
    assert ev("amount / (hour - 1) == 50") is True
    assert compiler().compile("amount / 0 > 1").fn(BASE) is False
    assert compiler().compile("amount / 0 > 1").type == BOOL


def test_optional_types_are_tracked() -> None:
    c = compiler()
    assert c.compile("amount * 2").type == NUMBER
    assert c.compile("score * 2").type == NUMBER.as_optional()
    assert c.compile("amount / hour").type == NUMBER.as_optional()
    assert c.compile("amount / 2").type == NUMBER
    assert c.compile("abs(score)").type == NUMBER.as_optional()
    assert c.compile("coalesce(score, 1)").type == NUMBER


def test_constants_are_folded() -> None:
    compiled = compiler().compile("1 + 2 * 3 == 7 and 2 in [1, 2]")
    assert compiled.fn({}) is True
    assert compiled.refs == frozenset()


def test_refs_and_called_udfs() -> None:
    compiled = compiler().compile("ratio(amount, hour) > 1 and flag")
    assert compiled.refs == {"amount", "hour", "flag"}
    assert compiled.udfs == {"ratio"}


def test_custom_udf_decorator_and_error_isolation() -> None:
    udfs = default_udfs()

    @udfs.udf(arg_types=["number"], return_type="bool", doc="Explodes on negative input.")
    def fragile(x: float) -> bool:
        if x < 0:
            raise RuntimeError("negative")
        return x > 10

    rs = parse_rule_set(
        "name: t\nversion: 1\nrules:\n"
        "  - {name: f, when: 'fragile(amount)', outcome: decline}\n"
        "  - {name: g, when: 'amount < 0', outcome: review}\n", udfs=udfs)
    ok = rs.evaluate({"amount": 20.0})
    assert ok.outcome.value == "decline" and ok.errors == []
    broken = rs.evaluate({"amount": -1.0})
    assert broken.outcome.value == "review"
    assert broken.values == {"f": False, "g": True}
    assert [(e.rule, e.error) for e in broken.errors] == [("f", "RuntimeError: negative")]


def test_udf_registration_is_validated() -> None:
    udfs = UdfRegistry()
    udfs.register("one", lambda: 1, [], "number")
    with pytest.raises(ValueError, match="already registered"):
        udfs.register("one", lambda: 1, [], "number")
    with pytest.raises(ValueError, match="unknown type"):
        udfs.register("two", lambda x: x, ["decimal"], "number")
    with pytest.raises(ValueError, match="identifier"):
        udfs.register("__x", lambda: 1, [], "number")
    assert {d["name"] for d in default_udfs().describe()} >= {
        "has", "in_list", "ratio", "velocity", "min", "max", "abs", "between", "coalesce"}


def test_rule_errors_name_the_rule_line_and_construct() -> None:
    text = ("name: t\nversion: 1\nrules:\n"
            "  - name: ok\n    when: amount > 1\n"
            "  - name: evil\n    when: ().__class__.__bases__\n")
    with pytest.raises(RuleSetError) as info:
        parse_rule_set(text, source="evil.yaml")
    message = str(info.value)
    assert message.startswith("evil.yaml:6: rule 'evil': attribute access")
    assert "column" in message


def test_condition_must_be_boolean() -> None:
    with pytest.raises(RuleSetError, match="must be a condition"):
        parse_rule_set("name: t\nversion: 1\nrules:\n  - {name: a, when: amount * 2}\n")
