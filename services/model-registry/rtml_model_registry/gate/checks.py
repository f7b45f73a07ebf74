"""The gate's checks as plain functions of what the worker loaded.

Kept apart from the worker process so each rule (and its message) is
unit-tested on small arrays in milliseconds; the worker only loads things
and calls these in order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from rtml_features.definitions import FeatureSet
from rtml_model_registry.gate.report import FEATURE_SET, HOLDOUT, LATENCY, SCORES, SIGNATURE, Check
from rtml_models.base import F64, ScoringModel
from rtml_models.registry.base import ModelVersion

#: Single-row calls made before timing starts (first calls pay lazy initialisation).
WARMUP_CALLS = 20


def check_signature(inputs: Sequence[str], feature_set: FeatureSet) -> Check:
    """The model's input names, in order, must be the feature set's: scorers build rows so."""
    expected = list(feature_set.names)
    actual = list(inputs)
    where = f"feature set {feature_set.name}@{feature_set.version}"
    if actual == expected:
        return Check.ok(SIGNATURE, f"inputs are the {len(expected)} features of {where}, "
                        "in order")
    missing = [name for name in expected if name not in actual]
    unexpected = [name for name in actual if name not in expected]
    if missing or unexpected:
        return Check.fail(
            SIGNATURE,
            f"inputs {actual} differ from {where}: missing {missing}, unexpected {unexpected}",
            missing=missing, unexpected=unexpected,
        )
    first = next(i for i, (a, e) in enumerate(zip(actual, expected, strict=True)) if a != e)
    return Check.fail(
        SIGNATURE,
        f"inputs are the features of {where} in a different order: position {first} is "
        f"{actual[first]!r}, the feature set has {expected[first]!r}",
        first_mismatch=first,
    )


def check_feature_set_tags(version: ModelVersion, feature_set: FeatureSet) -> Check:
    """The version must say it was trained on this feature set, at this version.

    Same names are not enough: a changed window or label delay keeps the
    names but changes the values, which the feature set's version hash tracks.
    """
    name, tagged = version.feature_set, version.feature_set_version
    if name != feature_set.name or tagged != feature_set.version:
        return Check.fail(
            FEATURE_SET,
            f"v{version.version} was trained on feature set {name}@{tagged}; this registry "
            f"serves {feature_set.name}@{feature_set.version}",
            trained_on=f"{name}@{tagged}", serving=f"{feature_set.name}@{feature_set.version}",
        )
    return Check.ok(FEATURE_SET, f"trained on {name}@{tagged}, the feature set served")


def holdout_rows(frame: pd.DataFrame, feature_set: FeatureSet,
                 source: str) -> tuple[F64 | None, Check]:
    """The held-out feature rows in feature-set order, or a failed check saying what is wrong."""
    missing = [name for name in feature_set.names if name not in frame.columns]
    if missing:
        return None, Check.fail(HOLDOUT, f"{source} lacks feature columns {missing}",
                                missing=missing)
    if len(frame) == 0:
        return None, Check.fail(HOLDOUT, f"{source} has no rows")
    try:
        rows = frame[feature_set.names].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        return None, Check.fail(HOLDOUT, f"{source} has non-numeric feature values: {exc}")
    bad_inputs = int((~np.isfinite(rows)).any(axis=1).sum())
    detail = f"{len(rows)} held-out rows from {source}"
    if bad_inputs:
        detail += f" ({bad_inputs} with missing or infinite inputs)"
    return rows, Check.ok(HOLDOUT, detail, rows=len(rows), rows_with_bad_inputs=bad_inputs)


def _first(mask: npt.NDArray[np.bool_]) -> int:
    return int(np.flatnonzero(mask)[0])


def check_scores(scores: F64, expected_rows: int) -> Check:
    """One finite probability in [0, 1] per held-out row."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = len(scores)
    if n != expected_rows:
        return Check.fail(SCORES, f"predict returned {n} scores for {expected_rows} rows")
    problems: list[str] = []
    data: dict[str, int] = {}
    for label, mask in (("NaN", np.isnan(scores)), ("infinite", np.isinf(scores))):
        count = int(mask.sum())
        if count:
            problems.append(f"{count} of {n} held-out scores are {label} "
                            f"(first at row {_first(mask)})")
            data[label.lower()] = count
    finite = np.isfinite(scores)
    outside = finite & ((scores < 0.0) | (scores > 1.0))
    count = int(outside.sum())
    if count:
        row = _first(outside)
        problems.append(f"{count} of {n} held-out scores are outside [0, 1] "
                        f"(first at row {row}: {float(scores[row])!r})")
        data["outside_unit_interval"] = count
    if problems:
        return Check.fail(SCORES, "; ".join(problems), rows=n, **data)
    return Check.ok(
        SCORES, f"{n} held-out scores are finite and in [0, 1] "
        f"(mean {float(scores.mean()):.4f}, min {float(scores.min()):.4f}, "
        f"max {float(scores.max()):.4f})",
        rows=n, mean=float(scores.mean()),
    )


def time_single_rows(model: ScoringModel, rows: F64, samples: int,
                     warmup: int = WARMUP_CALLS) -> list[int]:
    """Nanoseconds of ``samples`` single-row ``predict_one`` calls, cycling over ``rows``.

    Rows are passed as Python lists, as the request path builds them.
    """
    lists = rows.tolist()
    for i in range(min(warmup, samples)):
        model.predict_one(lists[i % len(lists)])
    durations = []
    for i in range(samples):
        row = lists[i % len(lists)]
        start = time.perf_counter_ns()
        model.predict_one(row)
        durations.append(time.perf_counter_ns() - start)
    return durations


def check_latency(durations_ns: Sequence[int], budget_ms: float) -> Check:
    """p99 of single-row calls within the budget (p50 and max reported too)."""
    ms = np.asarray(durations_ns, dtype=np.float64) / 1e6
    p50, p99 = (float(v) for v in np.percentile(ms, [50, 99]))
    data = {"p50_ms": round(p50, 4), "p99_ms": round(p99, 4), "max_ms": round(float(ms.max()), 4),
            "calls": len(ms), "budget_ms": budget_ms}
    if p99 > budget_ms:
        return Check.fail(
            LATENCY, f"p99 single-row latency {p99:.3g} ms exceeds the {budget_ms:g} ms budget "
            f"(p50 {p50:.3g} ms, {len(ms)} calls)", **data)
    return Check.ok(
        LATENCY, f"p99 single-row latency {p99:.3g} ms within the {budget_ms:g} ms budget "
        f"(p50 {p50:.3g} ms, {len(ms)} calls)", **data)
