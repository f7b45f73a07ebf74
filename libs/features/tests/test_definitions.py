"""Feature definitions validate themselves and version their content."""

import subprocess
import sys
from datetime import timedelta

import pytest

from rtml_features.baseline import BASELINE, REGISTRY, get_feature_set
from rtml_features.definitions import (
    Agg,
    DefinitionError,
    Entity,
    FeatureSet,
    Ratio,
    RowFeature,
    RowKind,
    WindowAggregate,
)

CUSTOMER = Entity("customer", "customer_id")
TERMINAL = Entity("terminal", "terminal_id")
DAY = timedelta(days=1)
W = WindowAggregate


def test_baseline_has_the_fifteen_reference_features_in_order() -> None:
    assert len(BASELINE.names) == 15
    assert BASELINE.names[-1] == "terminal_id_risk_30day_window"
    assert {e.name for e in BASELINE.entities} == {"customer", "terminal"}
    assert BASELINE.horizon(TERMINAL) == timedelta(days=37)
    assert BASELINE.uses_labels


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: FeatureSet("s", [W("x", Entity("card", "card_number"), Agg.COUNT, DAY)]),
         "field 'card_number' is not declared"),
        (lambda: FeatureSet("s", [W("x", Entity("card", "amount"), Agg.COUNT, DAY)]),
         "must be a string field to key an entity"),
        (lambda: W("x", CUSTOMER, Agg.COUNT, timedelta(0)), "window must be positive"),
        (lambda: W("x", CUSTOMER, Agg.COUNT, DAY, field="amount"), "count takes no field"),
        (lambda: WindowAggregate("x", CUSTOMER, Agg.SUM, DAY), "needs a field"),
        (lambda: W("x", CUSTOMER, Agg.SUM, DAY, field="is_fraud"), "needs a label_delay"),
        (lambda: W("x", TERMINAL, Agg.MAX, DAY, field="is_fraud", label_delay=DAY),
         "not meaningful"),
        (lambda: FeatureSet("s", [W("x", CUSTOMER, Agg.MEAN, DAY, field="balance")]),
         "field 'balance' is not declared"),
        (lambda: FeatureSet("s", [W("x", CUSTOMER, Agg.MEAN, DAY, field="currency")]),
         "is a string, not numeric"),
        (lambda: WindowAggregate("1x", CUSTOMER, Agg.COUNT, DAY), "must be an identifier"),
        (lambda: RowFeature("night", RowKind.NIGHT, night_end_hour=24), "night_end_hour"),
        (lambda: Ratio("r", WindowAggregate("a", CUSTOMER, Agg.COUNT, DAY),
                       WindowAggregate("b", CUSTOMER, Agg.COUNT, 2 * DAY)), "must share"),
        (lambda: Ratio("r", WindowAggregate("a", CUSTOMER, Agg.COUNT, DAY),
                       WindowAggregate("b", CUSTOMER, Agg.COUNT, DAY), default=float("nan")),
         "default must be finite"),
        (lambda: Ratio("r", WindowAggregate("a", CUSTOMER, Agg.COUNT, DAY),
                       WindowAggregate("b", CUSTOMER, Agg.COUNT, DAY), default=float("inf")),
         "default must be finite"),
        (lambda: FeatureSet("s", [RowFeature("a", RowKind.WEEKEND),
                                  RowFeature("a", RowKind.NIGHT)]), "duplicate names"),
        (lambda: FeatureSet("s", []), "has no features"),
    ],
)
def test_invalid_definitions_are_refused_with_the_reason(build: object, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        build()  # type: ignore[operator]


def test_version_changes_with_any_definition_and_only_then() -> None:
    def make(window_days: int) -> FeatureSet:
        return FeatureSet("s", [WindowAggregate("c", CUSTOMER, Agg.COUNT,
                                                timedelta(days=window_days))])

    assert make(1).version == make(1).version
    assert make(1).version != make(2).version


def test_unknown_feature_set_lists_the_known_ones() -> None:
    assert get_feature_set("baseline") is BASELINE
    with pytest.raises(KeyError, match="known: baseline, extended"):
        get_feature_set("nope")


def test_registered_versions_are_pinned() -> None:
    """A version names the Redis keys, checkpoints and models of a set: changing one is a
    migration (new keys, models retrained), never a side effect of another change."""
    from rtml_features.extended import EXTENDED

    assert BASELINE.version == "9476c2716c3a"
    assert EXTENDED.version == "f1c4ba41ee34"


def test_extended_is_the_baseline_then_the_customer_amount_range() -> None:
    from rtml_features.extended import EXTENDED

    assert get_feature_set("extended") is EXTENDED
    assert list(EXTENDED.features[:15]) == list(BASELINE.features)
    assert EXTENDED.names[15:] == [
        "customer_id_max_amount_7day_window", "customer_id_max_amount_30day_window",
        "customer_id_min_amount_30day_window"]
    extremes = {a.name: a for a in EXTENDED.window_aggregates[-3:]}
    assert [a.agg for a in extremes.values()] == [Agg.MAX, Agg.MAX, Agg.MIN]
    assert not any(a.uses_labels for a in extremes.values())
    assert EXTENDED.horizon(CUSTOMER) == BASELINE.horizon(CUSTOMER) == timedelta(days=30)
    assert EXTENDED.horizon(TERMINAL) == BASELINE.horizon(TERMINAL) == timedelta(days=37)


@pytest.mark.parametrize("first", ["rtml_features.extended", "rtml_features.baseline"])
def test_both_sets_are_registered_whichever_module_is_imported_first(first: str) -> None:
    """baseline.py's REGISTRY includes the extended set, which imports baseline.py: no
    import order may break the cycle or leave a set unregistered."""
    code = (f"import {first}\n"
            "from rtml_features.baseline import REGISTRY\n"
            "print(' '.join(sorted(REGISTRY)))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.split() == sorted(REGISTRY) == ["baseline", "extended"]


def test_the_platform_default_is_extended_and_one_variable_moves_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every service and command takes its set from here unless its own setting says
    otherwise (the test session pins ``baseline`` through ``RTML_FEATURE_SET``)."""
    from rtml_features.baseline import DEFAULT_FEATURE_SET, FEATURE_SET_ENV, default_feature_set

    monkeypatch.delenv(FEATURE_SET_ENV, raising=False)
    assert default_feature_set() == DEFAULT_FEATURE_SET == "extended"
    monkeypatch.setenv(FEATURE_SET_ENV, "baseline")
    assert default_feature_set() == "baseline"
    monkeypatch.setenv(FEATURE_SET_ENV, "")  # empty: unset, as the services' variables
    assert default_feature_set() == "extended"


def test_the_session_setting_tests_keep_is_the_platform_feature_set() -> None:
    """rtml_localstack cannot import the feature library, so it names the variable itself:
    the two must agree, or tests would drop the session's pinned set."""
    from rtml_features.baseline import FEATURE_SET_ENV
    from rtml_localstack.environment import SESSION_SETTINGS, is_developer_setting

    assert FEATURE_SET_ENV in SESSION_SETTINGS
    assert not is_developer_setting(FEATURE_SET_ENV)


def test_category_codes_name_each_code_feature_with_its_declared_categories() -> None:
    from rtml_common.schema import EventSchema, Field, FieldType

    schema = EventSchema(
        name="payment", topic="payments", id_field="id", event_time="at",
        partition_key="card",
        fields=[Field("id", FieldType.STRING), Field("at", FieldType.TIMESTAMP),
                Field("card", FieldType.STRING),
                Field("channel", FieldType.STRING, categories=("pos", "web")),
                Field("country", FieldType.STRING)])
    fs = FeatureSet("p", [RowFeature("channel_code", RowKind.CATEGORY_CODE, field="channel"),
                          RowFeature("hour", RowKind.HOUR_OF_DAY),
                          RowFeature("is_web", RowKind.EQUALS, field="channel", value="web")],
                    schema=schema)
    assert fs.category_codes == {"channel_code": ("pos", "web")}
    assert fs.source_topic == "payments" and fs.fields_read == ["channel"]
    assert fs.version != FeatureSet("p", fs.features, schema=EventSchema(
        name="payment", topic="payments", id_field="id", event_time="at",
        partition_key="card", fields=[*schema.fields[:3],
                                      Field("channel", FieldType.STRING,
                                            categories=("pos", "web", "app")),
                                      schema.fields[4]])).version
    with pytest.raises(DefinitionError, match="no declared categories"):
        FeatureSet("p", [RowFeature("c", RowKind.CATEGORY_CODE, field="country")], schema=schema)
    with pytest.raises(DefinitionError, match="'app' is not a category"):
        FeatureSet("p", [RowFeature("c", RowKind.EQUALS, field="channel", value="app")],
                   schema=schema)
    assert BASELINE.category_codes == {}
