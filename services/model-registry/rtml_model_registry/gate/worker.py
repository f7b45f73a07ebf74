"""The gate's clean process: load one version as a scorer would, score and time it.

Run as::

    python -m rtml_model_registry.gate.worker --tracking-uri U --name N --version V \\
        --feature-set F --samples K --latency-budget-ms B

It prints one JSON object on stdout (``{"checks": [...], "timings_ms": {...}}``)
and exits 0 whenever it could judge the version, even if checks failed.

Why a separate process: loading a model runs its library's code (River
unpickles), may leak threads or memory, and a hang must be killable. A fresh
interpreter also proves the version loads with nothing but what is
installed, as in a scorer, and times ``predict_one`` without the service's
own threads competing. The runner gives it a minimal environment (no API
key). Anything libraries print goes to stderr so stdout stays one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from rtml_features.baseline import get_feature_set
from rtml_features.definitions import FeatureSet
from rtml_model_registry.gate.checks import (
    check_feature_set_tags,
    check_latency,
    check_scores,
    check_signature,
    holdout_rows,
    time_single_rows,
)
from rtml_model_registry.gate.report import (
    FEATURE_SET,
    HOLDOUT,
    LATENCY,
    LOAD,
    SCORES,
    SIGNATURE,
    Check,
)
from rtml_models.base import ScoringModel
from rtml_models.registry.base import ModelRegistry, ModelVersion

#: Artifact of the training run holding held-out rows (feature columns, is_fraud, id).
HOLDOUT_ARTIFACT = "validation/holdout.parquet"

T = TypeVar("T")


def _timed(timings: dict[str, float], phase: str, func: Callable[[], T]) -> T:
    start = time.perf_counter()
    try:
        return func()
    finally:
        timings[phase] = round((time.perf_counter() - start) * 1000, 2)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def load_holdout(tracking_uri: str, info: ModelVersion, directory: Path) -> pd.DataFrame:
    """The version's held-out rows, downloaded from its training run."""
    import mlflow

    if info.run_id is None:
        raise FileNotFoundError(f"v{info.version} has no training run")
    path = mlflow.artifacts.download_artifacts(
        run_id=info.run_id, artifact_path=HOLDOUT_ARTIFACT, dst_path=str(directory),
        tracking_uri=tracking_uri,
    )
    return pd.read_parquet(path)


def evaluate(registry: ModelRegistry, tracking_uri: str, name: str, version: str,
             feature_set: FeatureSet, samples: int, budget_ms: float,
             directory: Path) -> dict[str, Any]:
    """Every check the worker can make; later checks are skipped when they can't run."""
    timings: dict[str, float] = {}
    checks: list[Check] = []

    def report() -> dict[str, Any]:
        return {"checks": [c.model_dump(mode="json") for c in checks], "timings_ms": timings}

    try:
        info = registry.get_version(name, version)
        model: ScoringModel = _timed(timings, "load",
                                     lambda: registry.load(name, version, directory / "model"))
    except Exception as exc:  # any load failure refuses; the reason is the point
        checks.append(Check.fail(LOAD, f"loading v{version} failed: {_error(exc)}"))
        for skipped in (FEATURE_SET, SIGNATURE, HOLDOUT, SCORES, LATENCY):
            checks.append(Check.skip(skipped, "the version did not load"))
        return report()
    checks.append(Check.ok(LOAD, f"{info.flavor} model loaded and its artifact digest "
                           f"{(info.digest or '')[:12]} verified", flavor=info.flavor))
    checks.append(check_feature_set_tags(info, feature_set))
    signature = check_signature(model.feature_names, feature_set)
    checks.append(signature)

    rows = None
    source = f"run {info.run_id} artifact {HOLDOUT_ARTIFACT}"
    try:
        frame = _timed(timings, "holdout",
                       lambda: load_holdout(tracking_uri, info, directory / "holdout"))
    except Exception as exc:
        checks.append(Check.fail(
            HOLDOUT, f"no held-out sample: {source} could not be read ({_error(exc)}); the "
            "training pipeline logs it with every version it registers"))
    else:
        rows, holdout_check = holdout_rows(frame, feature_set, source)
        checks.append(holdout_check)

    if rows is None or signature.failed:
        why = "no held-out rows" if rows is None else "inputs differ from the feature set"
        checks.append(Check.skip(SCORES, f"not scored: {why}"))
        checks.append(Check.skip(LATENCY, f"not timed: {why}"))
        return report()
    held_out = rows
    try:
        scores = _timed(timings, "score", lambda: model.predict(held_out))
        checks.append(check_scores(scores, len(held_out)))
    except Exception as exc:
        checks.append(Check.fail(SCORES, f"predict on the held-out rows raised {_error(exc)}"))
    try:
        durations = _timed(timings, "latency",
                           lambda: time_single_rows(model, held_out, samples))
        checks.append(check_latency(durations, budget_ms))
    except Exception as exc:
        checks.append(Check.fail(LATENCY, f"predict_one raised {_error(exc)}"))
    return report()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--feature-set", required=True)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--latency-budget-ms", type=float, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the checks; print the JSON report on the real stdout."""
    args = parse_args(argv)
    stdout = sys.stdout
    sys.stdout = sys.stderr  # library chatter must not corrupt the report
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from rtml_models.registry.mlflow import MlflowRegistry

    registry = MlflowRegistry(args.tracking_uri)
    np.seterr(all="ignore")  # NaN scores are reported, not warned about
    with tempfile.TemporaryDirectory(prefix="rtml-gate-") as tmp:
        report = evaluate(registry, args.tracking_uri, args.name, args.version,
                          get_feature_set(args.feature_set), args.samples,
                          args.latency_budget_ms, Path(tmp))
    stdout.write(json.dumps(report) + "\n")
    stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
