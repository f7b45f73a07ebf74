"""Per-version figures over the sliding event-time windows: the read side of the join.

Two windows, both ending at the newest scored transaction (event time):

* the **recent window** (``window_s``): latency p50/p99, score distribution,
  PSI against the champion, agreement at the decision threshold, errors;
* the **label window** (``label_window_s``, longer because labels lag): ROC
  AUC, average precision and card precision@k over the transactions whose
  label has *matured* — its ``labeled_at`` is at or before the label
  stream's event time (the newest ``labeled_at`` seen). Transactions without
  a matured label are not negatives: they are left out.

A shadow is compared with **the current champion** (the version of the newest
prediction) on **the same transactions**: its rows are inner-joined with that
champion's predictions, so sampling, outages or a mid-window promotion never
compare different traffic. The definitions of AUC, AP and card precision@k
are the project's (:func:`rtml_training.metrics.evaluate`); PSI uses
:func:`rtml_monitoring.divergence.psi` on bins cut at the champion's score
quantiles (:func:`rtml_monitoring.reference.describe`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from rtml_monitoring.divergence import psi
from rtml_monitoring.reference import describe
from rtml_shadow_auditor.store import (
    CHAMPION,
    CHAMPION_VERSION,
    LABEL_WATERMARK,
    SCORE_WATERMARK,
    SHADOW,
    Store,
    from_us,
)
from rtml_training.metrics import evaluate

US = 1_000_000
Floats = npt.NDArray[np.float64]

#: Error kinds counted per shadow version in the recent window.
CHAMPION_MISMATCH = "champion_mismatch"


@dataclass(frozen=True)
class Windows:
    """Where the windows are (event time, µs since the epoch)."""

    end_us: int
    recent_start_us: int
    label_start_us: int
    label_watermark_us: int | None

    @property
    def start_us(self) -> int:
        return min(self.recent_start_us, self.label_start_us)

    def describe(self) -> str:
        def fmt(us: int) -> str:
            return from_us(us).strftime("%Y-%m-%d %H:%M")

        labels = (f"labels matured up to {fmt(self.label_watermark_us)}"
                  if self.label_watermark_us is not None else "no labels yet")
        return (f"recent {fmt(self.recent_start_us)} to {fmt(self.end_us)} UTC; label metrics "
                f"from {fmt(self.label_start_us)}; {labels}")


@dataclass(frozen=True)
class Rows:
    """One version's rows over the whole (label) window, aligned with the champion's."""

    event_time_us: npt.NDArray[np.int64]
    customer_id: npt.NDArray[np.object_]
    score: Floats
    latency_ms: Floats
    #: The champion's score of the same transaction, NaN where it has none (yet).
    champion_score: Floats
    #: 1.0 fraud, 0.0 genuine, NaN not matured.
    label: Floats
    #: Whether the shadow says it scored beside another champion version than the paired one.
    mismatch: npt.NDArray[np.bool_]

    @property
    def paired(self) -> npt.NDArray[np.bool_]:
        return ~np.isnan(self.champion_score)

    @property
    def matured(self) -> npt.NDArray[np.bool_]:
        return ~np.isnan(self.label)


@dataclass(frozen=True)
class LabelMetrics:
    """AUC / AP / card precision@k of one version on matured rows (None: undefined)."""

    auc: float | None
    ap: float | None
    cp_at_k: float | None
    n: int
    n_fraud: int


@dataclass(frozen=True)
class VersionAudit:
    """Everything the policy and the report need about one version."""

    model_version: str
    role: str
    champion_version: str | None
    #: Rows in the recent window (transactions this version scored).
    scored: int
    #: Of those, rows the champion scored too.
    paired: int
    #: Champion predictions in the recent window this shadow has no score for
    #: (sampling or shadow failures; not an error by itself).
    missing: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    score_mean: float | None
    psi: float | None
    agreement: float | None
    #: Matured labels among paired rows of the label window (shadow) / own rows (champion).
    matured_labels: int
    frauds: int
    metrics: LabelMetrics | None
    #: The champion's figures on exactly the same matured rows (shadows only).
    champion_metrics: LabelMetrics | None
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))


@dataclass(frozen=True)
class Evaluation:
    """One evaluation: the windows, the champion and each shadow (plus rows for the report)."""

    model_name: str
    evaluated_at: datetime
    windows: Windows | None
    champion: VersionAudit | None
    shadows: list[VersionAudit]
    rows: dict[str, Rows]
    counters: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        windows = self.windows
        return {
            "model_name": self.model_name,
            "evaluated_at": self.evaluated_at.isoformat(),
            "window": None if windows is None else {
                "end": from_us(windows.end_us).isoformat(),
                "recent_start": from_us(windows.recent_start_us).isoformat(),
                "label_start": from_us(windows.label_start_us).isoformat(),
                "labels_matured_until": (None if windows.label_watermark_us is None
                                         else from_us(windows.label_watermark_us).isoformat()),
            },
            "champion": None if self.champion is None else self.champion.to_dict(),
            "shadows": [s.to_dict() for s in self.shadows],
            "counters": dict(self.counters),
        }


def _finite(value: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _opt(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def windows_of(store: Store, window_s: float, label_window_s: float) -> Windows | None:
    end = store.watermark_us(SCORE_WATERMARK)
    if end is None:
        return None
    return Windows(end, end - int(window_s * US), end - int(label_window_s * US),
                   store.watermark_us(LABEL_WATERMARK))


def load_rows(store: Store, role: str, version: str, champion: str, windows: Windows) -> Rows:
    """``version``'s rows since the earlier window start, with the champion's score and label."""
    label_wm = windows.label_watermark_us if windows.label_watermark_us is not None else -1
    rows = store.query(
        "SELECT s.event_time_us, s.customer_id, s.score, s.latency_ms, c.score, "
        "CASE WHEN l.labeled_at_us <= ? THEN l.is_fraud END, "
        "s.champion_version IS NOT NULL AND c.score IS NOT NULL AND s.champion_version != ? "
        "FROM scores s "
        "LEFT JOIN scores c ON c.transaction_id = s.transaction_id AND c.role = ? "
        "AND c.model_version = ? "
        "LEFT JOIN labels l ON l.transaction_id = s.transaction_id "
        "WHERE s.role = ? AND s.model_version = ? AND s.event_time_us >= ? "
        "ORDER BY s.event_time_us, s.transaction_id",
        (label_wm, champion, CHAMPION, champion, role, version, windows.start_us))
    n = len(rows)
    columns = list(zip(*rows, strict=True)) if rows else [()] * 7
    return Rows(
        event_time_us=np.fromiter(columns[0], dtype=np.int64, count=n),
        customer_id=np.array(columns[1], dtype=object),
        score=np.fromiter(columns[2], dtype=np.float64, count=n),
        latency_ms=np.fromiter(columns[3], dtype=np.float64, count=n),
        champion_score=np.array([np.nan if v is None else v for v in columns[4]],
                                dtype=np.float64),
        label=np.array([np.nan if v is None else float(v) for v in columns[5]], dtype=np.float64),
        mismatch=np.array([bool(v) for v in columns[6]], dtype=bool),
    )


def label_metrics(rows: Rows, mask: npt.NDArray[np.bool_], scores: Floats,
                  k: int) -> LabelMetrics | None:
    """The project's AUC / AP / card precision@k on ``mask``ed rows (None without rows)."""
    if not mask.any():
        return None
    days = pd.to_datetime(rows.event_time_us[mask], unit="us", utc=True).floor("D")
    frame = pd.DataFrame({"day": days, "customer_id": rows.customer_id[mask],
                          "is_fraud": rows.label[mask].astype(bool)})
    result = evaluate(frame, scores[mask], k=k)
    return LabelMetrics(_opt(result.auc), _opt(result.ap), _opt(result.cp_at_k), result.n,
                        result.n_fraud)


def _percentile(values: Floats, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def audit_version(rows: Rows, role: str, version: str, champion: str, windows: Windows,
                  champion_recent: int, threshold: float, bins: int, k: int) -> VersionAudit:
    """The figures of one version from its rows (see the module doc for which rows count)."""
    recent = rows.event_time_us >= windows.recent_start_us
    in_label_window = rows.event_time_us >= windows.label_start_us
    shadow = role == SHADOW
    paired_recent = recent & rows.paired
    mine = rows.score[recent]
    psi_value: float | None = None
    agreement: float | None = None
    if shadow and paired_recent.any():
        reference = describe(rows.champion_score[paired_recent], bins)
        psi_value = psi(reference.counts, reference.histogram(rows.score[paired_recent]))
        agreement = float(np.mean((rows.score[paired_recent] >= threshold)
                                  == (rows.champion_score[paired_recent] >= threshold)))
    # A shadow is judged on the transactions the champion scored too; the champion on its own.
    judged = in_label_window & rows.matured & (rows.paired if shadow else True)
    metrics = label_metrics(rows, judged, rows.score, k)
    champion_metrics = label_metrics(rows, judged, rows.champion_score, k) if shadow else None
    errors = {CHAMPION_MISMATCH: int((recent & rows.mismatch).sum())} if shadow else {}
    return VersionAudit(
        model_version=version, role=role, champion_version=None if not shadow else champion,
        scored=int(recent.sum()), paired=int(paired_recent.sum()) if shadow else int(recent.sum()),
        missing=max(champion_recent - int(paired_recent.sum()), 0) if shadow else 0,
        latency_p50_ms=_percentile(rows.latency_ms[recent], 50),
        latency_p99_ms=_percentile(rows.latency_ms[recent], 99),
        score_mean=float(mine.mean()) if len(mine) else None,
        psi=psi_value, agreement=agreement,
        matured_labels=int(judged.sum()),
        frauds=int((rows.label[judged] == 1).sum()),
        metrics=metrics, champion_metrics=champion_metrics, errors=errors)


def evaluate_state(store: Store, model_name: str, evaluated_at: datetime, *, window_s: float,
                   label_window_s: float, threshold: float, bins: int = 10,
                   k: int = 100) -> Evaluation:
    """Audit the current champion and every shadow that scored in the recent window."""
    counters = store.counters()
    windows = windows_of(store, window_s, label_window_s)
    champion = store.clock(CHAMPION_VERSION)
    if windows is None or champion is None:
        return Evaluation(model_name, evaluated_at, windows, None, [], {}, counters)
    champion_rows = load_rows(store, CHAMPION, champion, champion, windows)
    champion_recent = int((champion_rows.event_time_us >= windows.recent_start_us).sum())
    audits: list[VersionAudit] = []
    rows: dict[str, Rows] = {f"{CHAMPION}:{champion}": champion_rows}
    for version in store.shadow_versions(windows.recent_start_us):
        if version == champion:  # just promoted: its old shadow rows are no challenge any more
            continue
        shadow_rows = load_rows(store, SHADOW, version, champion, windows)
        rows[f"{SHADOW}:{version}"] = shadow_rows
        audits.append(audit_version(shadow_rows, SHADOW, version, champion, windows,
                                    champion_recent, threshold, bins, k))
    champion_audit = audit_version(champion_rows, CHAMPION, champion, champion, windows,
                                   champion_recent, threshold, bins, k)
    return Evaluation(model_name, evaluated_at, windows, champion_audit, audits, rows, counters)
