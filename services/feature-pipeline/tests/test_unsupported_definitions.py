"""Engines that compute only the first definitions refuse the others by name, never guess.

The payments example (examples/feature_repos/payments) declares aggregations and row kinds
that the Flink compiler and the streaming fast path do not translate yet; each must say
which features it cannot compute, and Flink's subset must keep the rest with the schema.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from rtml_feature_pipeline.flink.compile import (
    UnsupportedFeature,
    check_supported,
    supported_subset,
)
from rtml_features.baseline import BASELINE
from rtml_features.definitions import FeatureSet, UnsupportedDefinition
from rtml_features.stream import StreamingFeatureComputer

REPO = Path(__file__).resolve().parents[3] / "examples" / "feature_repos" / "payments"


@pytest.fixture(scope="module")
def payments() -> FeatureSet:
    package = types.ModuleType("payments_repo_under_test")
    package.__path__ = [str(REPO)]
    sys.modules[package.__name__] = package
    try:
        from payments_repo_under_test.features import PAYMENTS  # type: ignore[import-not-found]
    finally:
        for name in [n for n in sys.modules if n.startswith(package.__name__)]:
            del sys.modules[name]
    assert isinstance(PAYMENTS, FeatureSet)
    return PAYMENTS


def test_flink_names_each_feature_it_cannot_compute(payments: FeatureSet) -> None:
    with pytest.raises(UnsupportedFeature) as refused:
        check_supported(payments)
    message = str(refused.value)
    for name in ("card_device_age_s", "card_distinct_devices_1day", "card_last_amount",
                 "card_amount_stddev_30day", "tx_hour", "tx_channel_web"):
        assert f"'{name}'" in message
    assert "no translation for 'time_since_first'" in message
    assert "tx_amount" not in message  # a supported feature is not named


def test_flink_subset_keeps_the_classic_features_and_the_schema(payments: FeatureSet) -> None:
    subset = supported_subset(payments)
    assert subset.schema is payments.schema
    assert set(BASELINE.names) <= set(subset.names)
    assert {"device_nb_tx_10min", "ip_amount_10min"} <= set(subset.names)
    assert "card_last_amount" not in subset.names
    assert subset.version != payments.version


def test_the_streaming_fast_path_refuses_a_set_it_cannot_compute(payments: FeatureSet) -> None:
    with pytest.raises(UnsupportedDefinition, match="card_device_age_s"):
        StreamingFeatureComputer(payments)
