"""What one audit report shows: plain, immutable data, no I/O and no drawing.

The auditor service fills :class:`ReportData` from its paired champion/shadow
scores and matured labels; :func:`rtml_shadow_auditor.report.render_report`
turns it into HTML. Keeping the data separate lets the renderer be tested on
made-up numbers and lets the service build a report without knowing HTML.

Arrays are copied into read-only ``numpy`` arrays on construction, so a
``ReportData`` cannot change after it was handed to the renderer (the service
may render in another thread while its windows move on).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Literal, cast

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: A summary figure; ``None`` means "not available" (e.g. AUC before any label
#: matured, PSI/agreement for the champion itself) and is shown as "—".
MetricValue = float | int | bool | str | None

#: Summary-table rows in display order: metric key -> human label. Keys of
#: :attr:`VersionReport.metrics` not listed here are shown after these, under
#: their own name, so the service can add figures without touching the renderer.
METRIC_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "auc": "ROC AUC",
        "ap": "Average precision",
        "cp_at_100": "Card precision@100",
        "psi": "Score PSI vs champion",
        "agreement": "Decision agreement with champion",
        "latency_p50_ms": "Latency p50 (ms)",
        "latency_p99_ms": "Latency p99 (ms)",
        "sla_ok": "Within latency SLA",
        "matured_labels": "Matured labels",
        "frauds": "Matured frauds",
        "n_scored": "Transactions scored",
        "paired": "Paired with champion",
        "missing_vs_champion": "Missing vs champion",
        "champion_ap_same_rows": "Champion AP on the same rows",
        "errors": "Scoring errors",
    }
)

Decision = Literal["graduate", "hold"]


def _frozen_floats(values: Iterable[float] | npt.ArrayLike, name: str) -> FloatArray:
    """A read-only 1-D float64 copy; NaN/inf are refused (they would break the curves)."""
    array = np.array(values, dtype=np.float64, copy=True).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite numbers (found NaN or infinity)")
    array.setflags(write=False)
    return array


def _frozen_labels(values: Iterable[int | float | bool | None] | npt.ArrayLike) -> FloatArray:
    """Labels as float64 with NaN for "not matured yet", so one array carries both facts."""
    if isinstance(values, np.ndarray):
        array = np.array(values, dtype=np.float64, copy=True).reshape(-1)
    else:
        items = cast("Iterable[float | None]", values)
        array = np.array([math.nan if v is None else float(v) for v in items], dtype=np.float64)
    known = array[~np.isnan(array)]
    if known.size and not np.all((known == 0) | (known == 1)):
        raise ValueError("labels must be 0, 1 or None (not matured)")
    array.setflags(write=False)
    return array


def _epoch_seconds(values: Iterable[float | datetime] | npt.ArrayLike) -> FloatArray:
    """Timestamps as UTC epoch seconds; accepts datetimes (naive = UTC) or numbers."""
    out: list[float] = []
    items = values.tolist() if isinstance(values, np.ndarray) else values
    for v in cast("Iterable[float | datetime]", items):
        if isinstance(v, datetime):
            out.append((v if v.tzinfo else v.replace(tzinfo=UTC)).timestamp())
        else:
            out.append(float(v))
    return _frozen_floats(out, "latency_at")


@dataclass(frozen=True)
class Verdict:
    """The auditor's decision about one shadow version and why.

    ``decision`` is ``"graduate"`` (the shadow earned the champion alias) or
    ``"hold"`` (keep shadowing). ``reasons`` are short sentences shown as a
    list under the decision, e.g. ``"only 312 of 1000 labels matured"``.
    """

    decision: Decision
    reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.decision not in ("graduate", "hold"):
            raise ValueError(f"decision must be 'graduate' or 'hold', not {self.decision!r}")
        object.__setattr__(self, "reasons", tuple(str(r) for r in self.reasons))


@dataclass(frozen=True, eq=False)
class VersionReport:
    """One model version (the champion or a shadow) over the report window.

    Fields:
      version: registry version, e.g. ``"7"``.
      alias: the alias it is served under (``"champion"``, ``"challenger"``,
        ``"shadow-2"``, ...); shown next to the version.
      scores: fraud scores in [0, 1], one per transaction. Where the service
        pairs champion and shadow, index ``i`` is the same transaction in
        every version (the score-distribution chart does not need pairing,
        agreement/PSI are computed by the service and passed in ``metrics``).
      labels: same length as ``scores``; 1 fraud, 0 legitimate, ``None``
        (stored as NaN) when the label has not matured yet. ROC and
        precision-recall curves use only matured positions.
      latency_ms: scoring latency samples in milliseconds.
      latency_at: when each latency sample was taken, same length as
        ``latency_ms``; datetimes (naive = UTC) or UTC epoch seconds, stored
        as epoch seconds.
      metrics: summary figures keyed as in :data:`METRIC_LABELS` (``auc``,
        ``ap``, ``cp_at_100``, ``psi``, ``agreement``, ``latency_p50_ms``,
        ``latency_p99_ms``, ``sla_ok``, ``matured_labels``, ``errors``, ...);
        ``None`` = not available. Shown exactly as given (the renderer never
        recomputes them, so the table is the service's figures).
      verdict: the graduation verdict for a shadow; ``None`` for the champion.
    """

    version: str
    alias: str
    scores: FloatArray
    labels: FloatArray
    latency_ms: FloatArray = field(default_factory=lambda: _frozen_floats((), "latency_ms"))
    latency_at: FloatArray = field(default_factory=lambda: _frozen_floats((), "latency_at"))
    metrics: Mapping[str, MetricValue] = field(default_factory=dict)
    verdict: Verdict | None = None

    def __post_init__(self) -> None:
        scores = _frozen_floats(self.scores, "scores")
        labels = _frozen_labels(self.labels)
        if labels.size != scores.size:
            raise ValueError(
                f"version {self.version}: {labels.size} labels for {scores.size} scores"
            )
        latency = _frozen_floats(self.latency_ms, "latency_ms")
        latency_at = _epoch_seconds(self.latency_at)
        if latency.size != latency_at.size:
            raise ValueError(
                f"version {self.version}: {latency.size} latency samples "
                f"but {latency_at.size} timestamps"
            )
        object.__setattr__(self, "version", str(self.version))
        object.__setattr__(self, "alias", str(self.alias))
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "latency_ms", latency)
        object.__setattr__(self, "latency_at", latency_at)
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))

    @property
    def matured(self) -> npt.NDArray[np.bool_]:
        """Mask of transactions whose label has matured."""
        return ~np.isnan(self.labels)

    @property
    def matured_count(self) -> int:
        return int(self.matured.sum())

    @property
    def display_name(self) -> str:
        """``"v7 (champion)"``; unescaped (the renderer escapes)."""
        return f"v{self.version} ({self.alias})"


@dataclass(frozen=True, eq=False)
class ReportData:
    """Everything one audit report shows.

    Fields:
      model_name: registered model name (user-supplied; escaped when rendered).
      generated_at: when the report was produced (naive = UTC).
      window: free-text description of the data window, e.g.
        ``"last 24 h (2025-01-01 00:00 to 2025-01-02 00:00 UTC), 48 213 paired"``.
      champion: the serving version the shadows are compared with.
      shadows: each shadow version (may be empty: the report then shows only
        the champion and says there is nothing to audit).
      latency_sla_ms: the p99 latency SLA drawn as a line on the latency
        chart; ``None`` draws no line.
    """

    model_name: str
    generated_at: datetime
    window: str
    champion: VersionReport
    shadows: tuple[VersionReport, ...] = ()
    latency_sla_ms: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shadows", tuple(self.shadows))
        if self.generated_at.tzinfo is None:
            object.__setattr__(self, "generated_at", self.generated_at.replace(tzinfo=UTC))

    @property
    def versions(self) -> tuple[VersionReport, ...]:
        """Champion first, then the shadows in the given order."""
        return (self.champion, *self.shadows)


__all__: Sequence[str] = (
    "METRIC_LABELS",
    "Decision",
    "MetricValue",
    "ReportData",
    "Verdict",
    "VersionReport",
)
