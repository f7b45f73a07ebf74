"""The gate's rules and their messages, on small in-memory inputs (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from rtml_features.definitions import FeatureSet
from rtml_model_registry.gate.checks import (
    check_feature_set_tags,
    check_latency,
    check_scores,
    check_signature,
    holdout_rows,
    time_single_rows,
)
from rtml_model_registry.gate.compare import compare_with_champion
from rtml_model_registry.gate.report import CheckStatus
from rtml_models.registry.base import ModelVersion
from rtml_models.xgboost import XGBoostModel


def version(number: str, tags: dict[str, str] | None = None,
            metrics: dict[str, float] | None = None) -> ModelVersion:
    return ModelVersion(name="fraud", version=number, run_id="r", source="s",
                        created_at=datetime(2026, 1, 1, tzinfo=UTC), aliases=(),
                        tags=tags or {}, metrics=metrics or {})


def test_signature_names_missing_and_unexpected_inputs(feature_set: FeatureSet) -> None:
    names = feature_set.names
    assert check_signature(names, feature_set).status is CheckStatus.PASSED
    check = check_signature([*names[:13], "tx_amount_zscore"], feature_set)
    assert check.failed
    assert check.detail.startswith(f"inputs ['{names[0]}'")
    assert f"differ from feature set baseline@{feature_set.version}" in check.detail
    assert f"missing {names[13:]}, unexpected ['tx_amount_zscore']" in check.detail


def test_signature_refuses_the_right_names_in_the_wrong_order(feature_set: FeatureSet) -> None:
    names = list(feature_set.names)
    names[1], names[2] = names[2], names[1]
    check = check_signature(names, feature_set)
    assert check.failed
    assert "different order: position 1 is 'tx_during_night'" in check.detail


def test_feature_set_tags_must_match_name_and_version(feature_set: FeatureSet) -> None:
    good = {"rtml.feature_set": "baseline", "rtml.feature_set_version": feature_set.version}
    assert not check_feature_set_tags(version("1", good), feature_set).failed
    stale = check_feature_set_tags(
        version("2", {**good, "rtml.feature_set_version": "0ld"}), feature_set)
    assert stale.failed
    assert stale.detail == (f"v2 was trained on feature set baseline@0ld; this registry serves "
                            f"baseline@{feature_set.version}")


@pytest.mark.parametrize(("scores", "detail"), [
    ([0.1, np.nan, 0.3, np.nan], "2 of 4 held-out scores are NaN (first at row 1)"),
    ([0.1, np.inf, 0.3, 0.2], "1 of 4 held-out scores are infinite (first at row 1)"),
    ([0.1, 0.2, 1.5, -0.1], "2 of 4 held-out scores are outside [0, 1] (first at row 2: 1.5)"),
])
def test_scores_must_be_finite_probabilities(scores: list[float], detail: str) -> None:
    check = check_scores(np.array(scores), 4)
    assert check.failed
    assert check.detail == detail


def test_good_scores_pass_and_count_must_match() -> None:
    assert check_scores(np.array([0.0, 0.5, 1.0]), 3).status is CheckStatus.PASSED
    assert check_scores(np.array([0.5]), 3).detail == "predict returned 1 scores for 3 rows"


def test_latency_is_judged_on_the_p99() -> None:
    fast = [100_000] * 99 + [30_000_000]  # one 30 ms outlier in 100 calls: p99 ~0.3 ms
    assert check_latency(fast, budget_ms=20).status is CheckStatus.PASSED
    slow = [100_000] * 90 + [48_200_000] * 10
    check = check_latency(slow, budget_ms=20)
    assert check.failed
    assert check.detail.startswith("p99 single-row latency 48.2 ms exceeds the 20 ms budget")
    assert check.data["p50_ms"] == 0.1


def test_holdout_rows_come_in_feature_set_order(feature_set: FeatureSet) -> None:
    names = feature_set.names
    frame = pd.DataFrame({name: [float(i)] for i, name in enumerate(reversed(names))})
    frame["is_fraud"] = [True]
    rows, check = holdout_rows(frame, feature_set, "the holdout")
    assert check.status is CheckStatus.PASSED
    assert rows is not None
    assert rows[0].tolist() == [float(len(names) - 1 - i) for i in range(len(names))]
    rows, check = holdout_rows(frame.drop(columns=[names[0]]), feature_set, "the holdout")
    assert rows is None
    assert check.detail == f"the holdout lacks feature columns ['{names[0]}']"


def test_single_rows_are_timed_one_call_each(good_model: XGBoostModel) -> None:
    rows = np.zeros((3, len(good_model.feature_names)))
    durations = time_single_rows(good_model, rows, samples=7)
    assert len(durations) == 7
    assert all(d > 0 for d in durations)


def test_metric_comparison_with_the_champion() -> None:
    champion = version("2", metrics={"ap": 0.80})
    check = compare_with_champion(version("3", metrics={"ap": 0.70}), champion, "ap", 0.01)
    assert check.failed
    assert check.detail == ("ap 0.7000 of v3 is 0.1000 below the champion v2's 0.8000 "
                            "(at most 0.01 lower allowed)")
    assert not compare_with_champion(version("3", metrics={"ap": 0.795}), champion, "ap",
                                     0.01).failed
    assert compare_with_champion(version("3"), champion, "ap", 0.01).detail == (
        "v3's training run logged no 'ap' metric; the champion v2 has ap=0.8000")
    skipped = compare_with_champion(version("3", metrics={"ap": 0.1}), None, "ap", 0.01)
    assert (skipped.status, skipped.detail) == (CheckStatus.SKIPPED,
                                                "no current champion to compare with")
