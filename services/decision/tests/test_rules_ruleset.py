"""Rule sets: file schema, DAG, outcome resolution, embedded tests, versions, built-in files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rtml_common.events import FiredRule, Outcome
from rtml_decision.rules import (
    BASELINE_FEATURES,
    DEFAULT_RULES,
    FALLBACK_RULES,
    MissingInputError,
    RuleSet,
    RuleSetError,
    default_udfs,
    load_rule_set,
    parse_rule_set,
)


def make(rules: list[dict[str, Any]], **top: Any) -> RuleSet:
    doc = {"name": "t", "version": 1, "rules": rules, **top}
    return parse_rule_set(yaml.safe_dump(doc, sort_keys=False), source="t.yaml")


def refusal(rules: list[dict[str, Any]], **top: Any) -> str:
    with pytest.raises(RuleSetError) as info:
        make(rules, **top)
    return str(info.value)


# -- outcome resolution ---------------------------------------------------------------------


def test_highest_priority_fired_rule_decides() -> None:
    rs = make([
        {"name": "low", "when": "amount > 10", "outcome": "decline", "priority": 1},
        {"name": "high", "when": "amount > 100", "outcome": "approve", "priority": 5},
    ])
    assert rs.evaluate({"amount": 500.0}).outcome is Outcome.APPROVE
    result = rs.evaluate({"amount": 50.0})
    assert result.outcome is Outcome.DECLINE and result.decided_by == "low"


def test_ties_go_to_the_most_severe_outcome() -> None:
    rs = make([
        {"name": "a", "when": "amount > 1", "outcome": "approve", "reason": "A"},
        {"name": "r", "when": "amount > 1", "outcome": "review", "reason": "R"},
        {"name": "d", "when": "amount > 1", "outcome": "decline", "reason": "D"},
        {"name": "f", "when": "amount > 1", "reason": "F"},
    ])
    result = rs.evaluate({"amount": 5.0})
    assert result.outcome is Outcome.DECLINE
    assert result.fired == [
        FiredRule(rule="d", reason_code="D", outcome=Outcome.DECLINE),
        FiredRule(rule="r", reason_code="R", outcome=Outcome.REVIEW),
        FiredRule(rule="a", reason_code="A", outcome=Outcome.APPROVE),
        FiredRule(rule="f", reason_code="F", outcome=None),  # a flag, marked by outcome None
    ]


def test_default_outcome_when_nothing_fires_and_flags_do_not_decide() -> None:
    rs = make([{"name": "flag", "when": "amount > 1", "priority": 100}],
              default_outcome="review")
    result = rs.evaluate({"amount": 5.0})
    assert result.outcome is Outcome.REVIEW and result.decided_by is None
    assert result.fired_names == ["flag"]
    assert result.fired[0].reason_code == "FLAG"  # reason defaults to the upper-cased name


def test_rules_read_other_rules_in_topological_order() -> None:
    rs = make([
        {"name": "combo", "when": "big and night", "outcome": "decline"},
        {"name": "big", "when": "amount > 100"},
        {"name": "night", "when": "hour < 6"},
        {"name": "combo2", "when": "combo or not big", "outcome": "review"},
    ])
    assert [r.name for r in rs.order] == ["big", "night", "combo", "combo2"]
    assert rs.rule("combo").rule_refs == {"big", "night"}
    assert rs.inputs == {"amount", "hour"}
    result = rs.evaluate({"amount": 500.0, "hour": 2})
    assert result.values == {"big": True, "night": True, "combo": True, "combo2": True}
    assert rs.evaluate({"amount": 5.0, "hour": 2}).outcome is Outcome.REVIEW


@pytest.mark.parametrize(("rules", "cycle"), [
    ([{"name": "a", "when": "a"}], "a -> a"),
    ([{"name": "a", "when": "b"}, {"name": "b", "when": "a"}], "a -> b -> a"),
    ([{"name": "x", "when": "amount > 1"}, {"name": "a", "when": "x and b"},
      {"name": "b", "when": "c or x"}, {"name": "c", "when": "not a"}], "a -> b -> c -> a"),
])
def test_cycles_are_refused_with_the_cycle_spelled_out(rules: list[dict[str, Any]],
                                                       cycle: str) -> None:
    assert f"rules form a cycle: {cycle}" in refusal(rules)


# -- inputs ---------------------------------------------------------------------------------


def test_missing_required_input_is_a_clear_error_and_optional_ones_default_to_none() -> None:
    rs = make([{"name": "a", "when": "amount > 1 and hour < 5 and not has(score)",
                "outcome": "review"}])
    with pytest.raises(MissingInputError) as info:
        rs.evaluate({"score": 0.3})
    assert info.value.missing == ["amount", "hour"]
    assert rs.evaluate({"amount": 5.0, "hour": 1}).outcome is Outcome.REVIEW
    assert rs.evaluate({"amount": 5.0, "hour": 1, "score": None, "extra": "x"}).values["a"]
    assert rs.required_inputs == ("amount", "hour")
    assert rs.uses_score


def test_declared_inputs_extend_the_standard_schema() -> None:
    rs = make([{"name": "a", "when": "mcc == '5411' and card_present", "outcome": "review"}],
              inputs={"mcc": "str", "card_present": "bool"})
    assert rs.evaluate({"mcc": "5411", "card_present": True}).outcome is Outcome.REVIEW
    assert "unknown type" in refusal([{"name": "a", "when": "True"}], inputs={"x": "decimal"})


# -- file schema ----------------------------------------------------------------------------


@pytest.mark.parametrize(("rules", "top", "needle"), [
    ([{"name": "a", "when": "True", "outcom": "review"}], {}, "unknown key(s) outcom"),
    ([{"name": "a", "when": "True"}], {"extra": 1}, "unknown key(s) extra"),
    ([{"name": "a", "when": "True", "outcome": "block"}], {}, "unknown outcome 'block'"),
    ([{"name": "a", "when": "True"}, {"name": "a", "when": "True"}], {}, "duplicate rule"),
    ([{"name": "Bad-Name", "when": "True"}], {}, "lower_snake_case"),
    ([{"name": "amount", "when": "True"}], {}, "already an input"),
    ([{"name": "ratio", "when": "True"}], {}, "already a function"),
    ([{"name": "a", "when": "True", "priority": "high"}], {}, "priority must be an integer"),
    ([{"name": "a"}], {}, "'when' must be an expression"),
    ([], {}, "rules must be a non-empty list"),
    ([{"name": "a", "when": "True"}], {"lists": {"l": [1, "x"]}}, "mixes"),
    ([{"name": "a", "when": "True"}], {"lists": {"l": "x"}}, "must be a list"),
    ([{"name": "a", "when": 'in_list("l", terminal_id)'}], {"lists": {"l": [123]}},
     "quote ids"),
])
def test_schema_errors(rules: list[dict[str, Any]], top: dict[str, Any], needle: str) -> None:
    assert needle in refusal(rules, **top)


def test_yaml_errors_name_the_line() -> None:
    with pytest.raises(RuleSetError, match=r"^up\.yaml:5: invalid YAML: expected .,. or .\]."):
        parse_rule_set("name: t\nversion: 1\nrules: [\n  {a: }\n  - x\n", source="up.yaml")
    with pytest.raises(RuleSetError, match="missing top-level key 'rules'"):
        parse_rule_set("name: t\nversion: 1\n")
    with pytest.raises(RuleSetError, match="YAML mapping"):
        parse_rule_set("- just a list\n")


def test_rule_errors_carry_the_rule_line(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("name: t\nversion: 1\nrules:\n  - name: ok\n    when: amount > 1\n"
                    "  - name: bad\n    when: nope > 1\n")
    with pytest.raises(RuleSetError, match=rf"^{path}:6: rule 'bad': unknown name 'nope'"):
        load_rule_set(path)
    with pytest.raises(RuleSetError, match="cannot read"):
        load_rule_set(tmp_path / "missing.yaml")


def test_lists_from_code_and_file() -> None:
    udfs = default_udfs()
    udfs.register_list("vip", ["c9"])
    text = yaml.safe_dump({"name": "t", "version": 1, "lists": {"deny": ["t1"]}, "rules": [
        {"name": "v", "when": 'in_list("vip", customer_id)', "outcome": "approve",
         "priority": 2},
        {"name": "d", "when": 'in_list("deny", terminal_id)', "outcome": "decline"}]})
    rs = parse_rule_set(text, udfs=udfs)
    assert rs.evaluate({"customer_id": "c9", "terminal_id": "t1"}).outcome is Outcome.APPROVE
    assert rs.evaluate({"customer_id": "c1", "terminal_id": "t1"}).outcome is Outcome.DECLINE
    assert rs.evaluate({"customer_id": "c1", "terminal_id": None}).outcome is Outcome.APPROVE


# -- embedded tests -------------------------------------------------------------------------

RULES = [{"name": "big", "when": "amount >= 100", "outcome": "review", "priority": 1},
         {"name": "huge", "when": "amount >= 1000", "outcome": "decline", "priority": 2}]


def test_embedded_tests_pass_and_are_kept() -> None:
    rs = make(RULES, test_defaults={"amount": 1.0}, tests=[
        {"name": "small", "input": {}, "expect": {"outcome": "approve", "fired_exactly": []}},
        {"name": "huge", "input": {"amount": 5000}, "expect": {
            "outcome": "decline", "fired": ["huge"], "fired_exactly": ["huge", "big"]}},
        {"name": "big", "input": {"amount": 500}, "expect": {"fired": "big",
                                                              "not_fired": ["huge"]}},
    ])
    assert [t.name for t in rs.tests] == ["small", "huge", "big"]
    assert rs.run_tests() == []


@pytest.mark.parametrize(("expect", "needle"), [
    ({"outcome": "approve"}, "expected outcome approve; got outcome review, fired [big]"),
    ({"fired": ["huge"]}, "expected fired ['huge']"),
    ({"fired_exactly": []}, "expected fired exactly []"),
    ({"not_fired": ["big"]}, "expected not fired ['big']"),
])
def test_a_failing_embedded_test_refuses_the_rule_set(expect: dict[str, Any],
                                                      needle: str) -> None:
    message = refusal(RULES, tests=[
        {"name": "passes", "input": {"amount": 1}, "expect": {"outcome": "approve"}},
        {"name": "medium payment", "input": {"amount": 500}, "expect": expect}])
    assert "1 of 2 embedded test(s) failed" in message
    assert "test 'medium payment' (line" in message
    assert needle in message


def test_embedded_test_problems() -> None:
    assert "missing required rule inputs: amount" in refusal(
        RULES, tests=[{"name": "x", "input": {}, "expect": {"outcome": "approve"}}])
    assert "unknown input(s) amout" in refusal(
        RULES, tests=[{"name": "x", "input": {"amout": 1}, "expect": {"outcome": "approve"}}])
    assert "unknown rule(s) nope" in refusal(
        RULES, tests=[{"name": "x", "input": {"amount": 1}, "expect": {"fired": ["nope"]}}])
    assert "expect must name" in refusal(
        RULES, tests=[{"name": "x", "input": {"amount": 1}}])


def test_udf_error_fails_an_embedded_test() -> None:
    udfs = default_udfs()
    udfs.register("boom", lambda x: 1 / 0, ["number"], "bool")
    text = yaml.safe_dump({"name": "t", "version": 1,
                           "rules": [{"name": "b", "when": "boom(amount)"}],
                           "tests": [{"name": "x", "input": {"amount": 1},
                                      "expect": {"outcome": "approve"}}]})
    with pytest.raises(RuleSetError, match="rule errors: b: ZeroDivisionError"):
        parse_rule_set(text, udfs=udfs)


# -- versions -------------------------------------------------------------------------------


def test_version_is_declared_version_plus_content_hash() -> None:
    a = make(RULES)
    assert a.version.startswith("1+") and len(a.version) == 2 + 8
    assert make(RULES).version == a.version
    changed = [dict(RULES[0], when="amount >= 101"), RULES[1]]
    assert make(changed).version != a.version
    assert make(RULES, version="2").version.startswith("2+")
    assert make(RULES, description="same rules, new words").version != a.version
    # Comments and layout do not change the content.
    text = yaml.safe_dump({"name": "t", "version": 1, "rules": RULES})
    assert parse_rule_set("# a comment\n" + text).version == a.version


# -- the built-in rule files ----------------------------------------------------------------


def test_default_rule_set_loads_with_a_20_rule_dag() -> None:
    rs = load_rule_set(DEFAULT_RULES)
    assert rs.name == "default" and len(rs.rules) == 20
    assert len(rs.tests) >= 8 and rs.run_tests() == []
    assert any(r.rule_refs for r in rs.rules)
    assert rs.uses_score
    assert rs.inputs <= {*BASELINE_FEATURES, "score", "amount", "hour", "is_weekend",
                         "customer_id", "terminal_id"}


def test_fallback_rule_set_reads_only_request_fields() -> None:
    rs = load_rule_set(FALLBACK_RULES)
    assert rs.name == "fallback" and len(rs.tests) >= 5 and rs.run_tests() == []
    assert rs.inputs <= {"amount", "hour", "is_weekend", "customer_id", "terminal_id"}
    assert not rs.uses_score
    assert rs.evaluate({"amount": 20000.0, "hour": 12, "customer_id": "7",
                        "terminal_id": None}).outcome is Outcome.DECLINE


def test_default_rule_set_without_a_score_still_decides() -> None:
    rs = load_rule_set(DEFAULT_RULES)
    context: dict[str, object] = dict(rs.tests[0].input)
    context["score"] = None
    assert rs.evaluate(context).outcome is Outcome.APPROVE
    del context["score"]
    assert rs.evaluate(context).outcome is Outcome.APPROVE


def test_baseline_feature_names_match_the_feature_library() -> None:
    baseline = pytest.importorskip("rtml_features.baseline")
    assert list(BASELINE_FEATURES) == baseline.BASELINE.names


def test_describe_is_json_able() -> None:
    import json

    summary = load_rule_set(DEFAULT_RULES).describe()
    assert json.loads(json.dumps(summary))["rules"][0]["name"] == "score_high"


def test_yaml_aliases_and_huge_files_are_refused() -> None:
    bomb = "a: &a [1, 1]\nb: &b [*a, *a]\nname: t\nversion: 1\nrules: [{name: x, when: 'True'}]\n"
    with pytest.raises(RuleSetError, match="aliases"):
        parse_rule_set(bomb)
    with pytest.raises(RuleSetError, match="larger than"):
        parse_rule_set("#" * 2_000_000)


# -- hostile YAML (issue #17): each a RuleSetError naming the line, never a crash -----------

VALID = 'name: t\nversion: "1"\nrules:\n  - {name: r, when: "amount > 1", outcome: review}\n'


@pytest.mark.parametrize(("text", "expected"), [
    ("name: t\nversion: 1\nrules: " + "[" * 5000 + "]" * 5000 + "\n",
     "t.yaml:3: invalid YAML: nested deeper than 32 levels"),
    ("name: t\nversion: 1\nrules: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
     "t.yaml:3: invalid YAML: nested deeper than 32 levels"),
    ("name: t\nversion: 1\nrules:\n" + "".join(" " * i + "- \n" for i in range(300)),
     "t.yaml:35: invalid YAML: nested deeper than 32 levels"),
    (VALID.replace('"1"', "9" * 5000), "t.yaml:2: invalid YAML: integer longer than 30 digits"),
    (VALID.replace('"1"', "0x" + "f" * 5000),
     "t.yaml:2: invalid YAML: integer longer than 30 digits"),
    (VALID.replace('"1"', ":".join(["59"] * 40)),
     "t.yaml:2: invalid YAML: integer longer than 30 digits"),
    (VALID.replace("review}", "review, priority: " + "9" * 5000 + "}"),
     "t.yaml:4: invalid YAML: integer longer than 30 digits"),
    (VALID + "lists:\n  big: [" + "7" * 5000 + "]\n",
     "t.yaml:6: invalid YAML: integer longer than 30 digits"),
    (VALID + "test_defaults: {amount: " + "7" * 5000 + "}\n",
     "t.yaml:5: invalid YAML: integer longer than 30 digits"),
    (VALID + "name: again\n", "t.yaml:5: invalid YAML: duplicate key 'name' (first at line 1)"),
    (VALID.replace("review}", "review, outcome: decline}"),
     "t.yaml:4: invalid YAML: duplicate key 'outcome' (first at line 4)"),
    (VALID.replace("review}", 'review, reason: "\\ud800"}'),
     "t.yaml:4: invalid YAML: string with a lone surrogate (\\ud800-\\udfff) is not valid "
     "Unicode"),
    (VALID.replace('"1"', "1.0e+999"), "t.yaml: version must be a finite number or a non-empty "
                                    "string"),
])
def test_hostile_yaml_is_refused_with_its_line(text: str, expected: str) -> None:
    with pytest.raises(RuleSetError) as refused:
        parse_rule_set(text, source="t.yaml")
    assert str(refused.value) == expected


def test_integers_a_rule_file_needs_still_load() -> None:
    rule_set = parse_rule_set(VALID.replace("review}", "review, priority: -123456789}")
                              + "lists:\n  ids: [1234567890123456789012345678]\n",
                              source="t.yaml")
    assert rule_set.rules[0].priority == -123456789
    assert rule_set.lists["ids"] == frozenset({1234567890123456789012345678})


def test_any_mutation_of_a_rule_file_is_a_rule_set_or_a_rule_set_error() -> None:
    """Property: whatever the bytes of an upload, the parser answers or says why — no other
    exception (each one was a 500 at the API)."""
    import orjson
    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis import strategies as st

    source = DEFAULT_RULES.read_text()
    hostile = ["[" * 100, "{a: " * 60, "9" * 5000, "0x" + "f" * 400, "*ref", "&a ", "!!python/",
               "\x00", "\ud800", "1.0e+999", "name: x", ": :", "- - -", "'", '"', "\t", "%YAML",
               "!!binary AAAA", "<<: {a: 1}", "? [a]\n: b", '"\\ud800"', "!!str ", "!!set {a}",
               "!!timestamp 2001-12-14", "2001-12-14t21:59:43.10-05:00", ".nan", "-.inf"]

    @settings(max_examples=100, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @seed(17)
    @given(st.integers(0, len(source)), st.integers(0, 200), st.sampled_from(hostile) | st.text())
    def mutated(at: int, cut: int, insert: str) -> None:
        text = source[:at] + insert + source[at + cut:]
        try:
            accepted = parse_rule_set(text, source="m.yaml")
        except RuleSetError as refused:
            assert str(refused).startswith("m.yaml")
            return
        orjson.dumps(accepted.describe())  # what decisions and the API send is encodable

    mutated()


def test_a_refusal_lists_at_most_20_failing_tests_and_counts_them_all() -> None:
    tests = "".join(f"  - {{name: t{i}, input: {{amount: 5.0}}, expect: {{outcome: approve}}}}\n"
                    for i in range(100))
    with pytest.raises(RuleSetError) as refused:
        parse_rule_set(VALID + "tests:\n" + tests, source="t.yaml")
    message = str(refused.value)
    assert message.startswith("t.yaml: 100 of 100 embedded test(s) failed:")
    assert "test 't19'" in message and "test 't20'" not in message
    assert message.endswith("... and 80 more")
