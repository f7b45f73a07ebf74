"""Rules read the served request's declared fields and feature set, types checked at upload.

The environment is built from a schema and a feature set
(:func:`rtml_decision.rules.request_inputs`): for the handbook's it holds every
standard input with its old type (so rule sets valid before stay valid); for
the payments example (examples/feature_repos/payments) it holds the payment's
fields (categorical ones with their categories) and its 32 features.
"""

from __future__ import annotations

import asyncio
import json
import sys
import types
from pathlib import Path

import pytest

from rtml_common.handbook import TRANSACTION_SCHEMA
from rtml_common.schema import EventSchema, Field, FieldType
from rtml_decision.rule_worker import RuleWorker
from rtml_decision.rules import (
    DEFAULT_RULES,
    FALLBACK_RULES,
    InputsError,
    MissingInputError,
    RuleInputs,
    RuleSetError,
    load_rule_set,
    parse_rule_set,
    request_inputs,
    standard_inputs,
)
from rtml_features.baseline import get_feature_set
from rtml_features.definitions import FeatureSet

REPO = Path(__file__).resolve().parents[3] / "examples" / "feature_repos" / "payments"


def _payments() -> FeatureSet:
    name = "repo_decision_rules_payments"
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [str(REPO)]
        sys.modules[name] = package
    module = __import__(f"{name}.features", fromlist=["PAYMENTS"])
    feature_set: FeatureSet = module.PAYMENTS
    return feature_set


@pytest.fixture(scope="module")
def payments() -> RuleInputs:
    feature_set = _payments()
    return request_inputs(feature_set.schema, feature_set.names, feature_set.name)


def rules_text(*whens: str, extra: str = "") -> str:
    lines = ["name: t", "version: 1", extra, "rules:"]
    lines += [f"  - {{name: r{i}, when: '{when}', outcome: review}}"
              for i, when in enumerate(whens, 1)]
    return "\n".join(lines) + "\n"


def refusal(text: str, inputs: RuleInputs) -> str:
    with pytest.raises(RuleSetError) as caught:
        parse_rule_set(text, inputs=inputs)
    return str(caught.value)


def test_the_handbook_environment_keeps_every_standard_input_and_its_type() -> None:
    for name in ("baseline", "extended"):
        feature_set = get_feature_set(name)
        inputs = request_inputs(feature_set.schema, feature_set.names, feature_set.name)
        for input_name, type_ in standard_inputs().items():
            assert inputs.types[input_name] == type_, (name, input_name)
        # the built-in rule sets load against it unchanged
        load_rule_set(DEFAULT_RULES, inputs=inputs)
        load_rule_set(FALLBACK_RULES, inputs=inputs)
        assert str(inputs.types["currency"]) == "str"  # has a default: never missing
        assert set(feature_set.names) <= set(inputs.types)
    extended = get_feature_set("extended")
    inputs = request_inputs(extended.schema, extended.names, extended.name)
    # the served set's own features need no declaration any more
    rule_set = parse_rule_set(rules_text("customer_id_max_amount_30day_window >= 1000"),
                              inputs=inputs)
    assert rule_set.input_types == {"customer_id_max_amount_30day_window":
                                    inputs.types["customer_id_max_amount_30day_window"]}


def test_rules_read_payment_fields_and_features(payments: RuleInputs) -> None:
    text = rules_text(
        'channel == "web" and merchant_category in ["electronics", "gaming"]',
        "card_distinct_devices_1day >= 3 and device_nb_tx_10min > 5",
        'ip_address == "10.0.0.1" or country != "FR"',
        "is_weekend and hour < 6 and amount > 100",
        extra="lists: {risky_categories: [travel, gaming]}")
    rule_set = parse_rule_set(text, inputs=payments)
    assert str(rule_set.input_types["ip_address"]) == "str?"
    assert rule_set.input_types["channel"].categories == ("pos", "web", "app")
    context = {"channel": "web", "merchant_category": "gaming", "ip_address": None,
               "country": "FR", "card_distinct_devices_1day": 4.0, "device_nb_tx_10min": 6.0,
               "is_weekend": True, "hour": 3.0, "amount": 250.0}
    result = rule_set.evaluate(context)
    assert result.fired_names == ["r1", "r2", "r4"]  # r3: the missing ip compares false
    with pytest.raises(MissingInputError, match="channel"):
        rule_set.evaluate({**context, "channel": None})


@pytest.mark.parametrize(("when", "message"), [
    ('channel == "wbe"', "rule 'r1': 'wbe' is not a category of channel; allowed: pos, web, "
                         "app"),
    ('"wbe" != channel', "'wbe' is not a category of channel"),
    ('channel in ["web", "ap"]', "'ap' is not a category of channel; allowed: pos, web, app"),
    ('merchant_category not in ["grocery", "fule"]',
     "'fule' is not a category of merchant_category; allowed: grocery, fuel, restaurants"),
    ("channel > 3", "rule 'r1': cannot compare str > number (channel is str)"),
    ('amount == "web"', "rule 'r1': cannot compare number == str (amount is number)"),
    ('channel < "web"', "`<` needs numbers, got str (channel is str)"),
    ("is_weekend == 1", "cannot compare bool == number (is_weekend is bool)"),
    ('devcie_id == "x"', "unknown name 'devcie_id'; did you mean device_id? (neither an "
                         "input of request schema 'payment' and feature set 'payments' nor a "
                         "rule)"),
    ("event_time > 0", "'event_time' is the request's timestamp field; rules read hour and "
                       "is_weekend"),
    ("card_distinct_devices_1day and amount > 1", "`and` needs booleans, got number"),
])
def test_upload_refusals_name_the_rule_and_the_problem(payments: RuleInputs, when: str,
                                                       message: str) -> None:
    text = rules_text(when)
    problem = refusal(text, payments)
    assert problem.startswith("<upload>:5: rule 'r1': ")  # the rule's line
    assert message in problem


def test_named_lists_and_embedded_tests_are_checked_against_categories(
        payments: RuleInputs) -> None:
    listed = rules_text('in_list("web_like", channel)', extra="lists: {web_like: [web, apps]}")
    assert ("argument 2 of in_list(): the list holds 'apps', which is not a category of "
            "channel; allowed: pos, web, app") in refusal(listed, payments)
    tested = rules_text('channel == "web"') + (
        "tests:\n  - name: web\n    input: {channel: wbe}\n    expect: {outcome: review}\n")
    assert "test 'web': input channel: 'wbe' is not a category of channel" in refusal(
        tested, payments)
    fine = rules_text('channel == "web"') + (
        "tests:\n  - name: web\n    input: {channel: web}\n    expect: {outcome: review}\n")
    assert parse_rule_set(fine, inputs=payments).run_tests() == []


def test_inputs_section_adds_names_but_cannot_retype_declared_ones(payments: RuleInputs) -> None:
    retyped = rules_text('amount == "x"', extra="inputs: {amount: str}")
    assert "input 'amount': declared str here but it is number in request schema 'payment' " \
           "and feature set 'payments'" in refusal(retyped, payments)
    stamped = rules_text("amount > 1", extra="inputs: {event_time: number}")
    assert "input 'event_time': 'event_time' is the request's timestamp field" in refusal(
        stamped, payments)
    # repeating a declared type keeps the declaration's (categories included); new names add
    same = rules_text('channel == "web" and risk_tier == "high"',
                      extra="inputs: {channel: str, risk_tier: str}")
    rule_set = parse_rule_set(same, inputs=payments)
    assert rule_set.input_types["channel"].categories == ("pos", "web", "app")
    assert rule_set.input_types["risk_tier"].categories is None
    # the legacy standard inputs (no schema given) keep allowing a re-typing, as before
    parse_rule_set(rules_text('amount == "x"', extra="inputs: {amount: str}"))


def test_an_environment_whose_names_clash_is_refused() -> None:
    fields = [Field("id", FieldType.STRING), Field("at", FieldType.TIMESTAMP),
              Field("card", FieldType.STRING)]

    def schema(*extra: Field) -> EventSchema:
        return EventSchema(name="refund", topic="refunds", id_field="id", event_time="at",
                           partition_key="card", fields=[*fields, *extra])

    with pytest.raises(InputsError, match="field 'score' has the name of a rule input the "
                                          "service computes \\(the model score\\)"):
        request_inputs(schema(Field("score", FieldType.NUMBER)), [], "refunds")
    with pytest.raises(InputsError, match="field 'hour'"):
        request_inputs(schema(Field("hour", FieldType.INTEGER)), [], "refunds")
    with pytest.raises(InputsError, match="feature 'card' has the name of a request field"):
        request_inputs(schema(), ["card"], "refunds")
    typed = request_inputs(schema(Field("n", FieldType.INTEGER, required=False),
                                  Field("ok", FieldType.BOOLEAN),
                                  Field("tier", FieldType.STRING, required=False,
                                        categories=("a", "b"), default="a")), ["f"], "refunds")
    assert typed.describe() == {
        "score": "number?", "hour": "number", "is_weekend": "bool", "id": "str",
        "card": "str", "n": "number?", "ok": "bool", "tier": "str of a, b", "f": "number"}
    assert typed.fields == ("id", "card", "n", "ok", "tier")


def test_the_rule_worker_validates_uploads_against_its_inputs(payments: RuleInputs) -> None:
    worker = RuleWorker(30.0, 30.0, payments)
    rule_set = asyncio.run(worker.validate(rules_text('channel == "app"')))
    assert rule_set.input_types["channel"].categories == ("pos", "web", "app")
    with pytest.raises(RuleSetError, match="rule 'r1': 'ap' is not a category of channel"):
        asyncio.run(worker.validate(rules_text('channel == "ap"')))
    with pytest.raises(RuleSetError, match="rule 'r1': 'ap' is not a category of channel"):
        worker.validate_blocking(rules_text('channel == "ap"'), "<shared>")
    # the handbook's environment does not know a payment's fields
    handbook = get_feature_set("baseline")
    plain = RuleWorker(30.0, 30.0, request_inputs(TRANSACTION_SCHEMA, handbook.names,
                                                  handbook.name))
    with pytest.raises(RuleSetError, match="unknown name 'channel'"):
        asyncio.run(plain.validate(rules_text('channel == "app"')))


def test_the_offline_backtest_checks_against_a_served_set(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    import pandas as pd

    from rtml_decision.backtest import main

    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text('currency == "EUR" and amount > 100'))
    decisions = tmp_path / "decisions.parquet"
    pd.DataFrame({"transaction_id": ["a", "b"], "outcome": ["approve", "approve"],
                  "currency": ["EUR", "USD"], "amount": [500.0, 500.0]}).to_parquet(decisions)
    assert main(["--rules", str(rules), "--decisions", str(decisions)]) == 2
    assert "unknown name 'currency'" in capsys.readouterr().err  # the standard inputs
    assert main(["--rules", str(rules), "--decisions", str(decisions), "--json",
                 "--feature-set", "baseline"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["changed"] == 1 and report["evaluated"] == 2
