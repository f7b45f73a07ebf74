"""The gate's one in-process check: a new champion may not be clearly worse than the old.

Only the training run's logged metrics are read (nothing is loaded), so
this runs in the service. Higher is better for the metric compared (``ap``
by default: average precision suits the rare positive class); a drop of up
to ``max_drop`` is allowed so a retrain on fresher data isn't blocked by
evaluation noise.
"""

from __future__ import annotations

from rtml_model_registry.gate.report import METRICS, Check
from rtml_models.registry.base import ModelVersion


def compare_with_champion(candidate: ModelVersion, champion: ModelVersion | None,
                          metric: str, max_drop: float) -> Check:
    """Passed, failed, or skipped with the reason there is nothing to compare."""
    if champion is None:
        return Check.skip(METRICS, "no current champion to compare with")
    if champion.version == candidate.version:
        return Check.skip(METRICS, f"v{candidate.version} is the current champion")
    theirs = champion.metrics.get(metric)
    ours = candidate.metrics.get(metric)
    if ours is None:
        known = ("" if theirs is None
                 else f"; the champion v{champion.version} has {metric}={theirs:.4f}")
        return Check.fail(METRICS, f"v{candidate.version}'s training run logged no {metric!r} "
                          f"metric{known}", metric=metric)
    if theirs is None:
        return Check.skip(METRICS, f"the champion v{champion.version}'s training run logged "
                          f"no {metric!r} metric; nothing to compare", metric=metric,
                          candidate=ours)
    data = {"metric": metric, "candidate": ours, "champion": theirs,
            "champion_version": champion.version, "max_drop": max_drop}
    if ours < theirs - max_drop:
        return Check.fail(
            METRICS, f"{metric} {ours:.4f} of v{candidate.version} is {theirs - ours:.4f} below "
            f"the champion v{champion.version}'s {theirs:.4f} (at most {max_drop:g} lower "
            "allowed)", **data)
    return Check.ok(
        METRICS, f"{metric} {ours:.4f} of v{candidate.version} vs {theirs:.4f} of the champion "
        f"v{champion.version} (at most {max_drop:g} lower allowed)", **data)
