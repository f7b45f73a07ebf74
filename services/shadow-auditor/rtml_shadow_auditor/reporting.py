"""An :class:`~.audit.Evaluation` as the report's :class:`ReportData`, and writing the HTML.

The report package (``rtml_shadow_auditor.report``) draws; this module only
maps the auditor's figures onto its input. Summary figures are passed
through exactly (the renderer never recomputes them); the arrays behind the
charts are the same rows the figures were computed on — for a shadow its
paired rows of the label window, for the champion its own — thinned evenly
to at most :data:`MAX_POINTS` so a busy week does not make a 100 MB page.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from rtml_shadow_auditor.audit import Evaluation, Rows, VersionAudit
from rtml_shadow_auditor.policy import Verdict
from rtml_shadow_auditor.report import ReportData, VersionReport, render_report
from rtml_shadow_auditor.report import Verdict as ReportVerdict
from rtml_shadow_auditor.store import CHAMPION, SHADOW

#: Most transactions (and latency samples) per version drawn in the charts.
MAX_POINTS = 20_000


def _thin(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.intp]:
    """Indices of ``mask``'s rows, evenly thinned to at most MAX_POINTS."""
    index = np.flatnonzero(mask)
    if len(index) > MAX_POINTS:
        index = index[np.linspace(0, len(index) - 1, MAX_POINTS).round().astype(np.intp)]
    return index


def figures(audit: VersionAudit, sla_ms: float, k: int) -> dict[str, float | int | bool | None]:
    """The summary-table figures of one version (keys of the report's METRIC_LABELS)."""
    metrics = audit.metrics
    p99 = audit.latency_p99_ms
    return {
        "auc": metrics.auc if metrics else None,
        "ap": metrics.ap if metrics else None,
        f"cp_at_{k}": metrics.cp_at_k if metrics else None,
        "psi": audit.psi,
        "agreement": audit.agreement,
        "latency_p50_ms": audit.latency_p50_ms,
        "latency_p99_ms": p99,
        "sla_ok": None if p99 is None else p99 <= sla_ms,
        "matured_labels": audit.matured_labels,
        "frauds": audit.frauds,
        "n_scored": audit.scored,
        "paired": audit.paired if audit.role == SHADOW else None,
        "missing_vs_champion": audit.missing if audit.role == SHADOW else None,
        "champion_ap_same_rows": (audit.champion_metrics.ap if audit.champion_metrics
                                  else None),
        "errors": audit.error_count,
    }


def _version(audit: VersionAudit, rows: Rows, alias: str, start_us: int, recent_us: int,
             sla_ms: float, k: int, verdict: Verdict | None) -> VersionReport:
    in_window = rows.event_time_us >= start_us
    drawn = _thin(in_window & (rows.paired if audit.role == SHADOW else True))
    recent = _thin(rows.event_time_us >= recent_us)
    return VersionReport(
        version=audit.model_version, alias=alias,
        scores=rows.score[drawn], labels=rows.label[drawn],
        latency_ms=rows.latency_ms[recent],
        latency_at=rows.event_time_us[recent] / 1_000_000,
        metrics=figures(audit, sla_ms, k),
        verdict=None if verdict is None else ReportVerdict(verdict.decision,
                                                           tuple(verdict.reasons)))


def build_report(evaluation: Evaluation, verdicts: Mapping[str, Verdict],
                 aliases: Mapping[str, str], sla_ms: float, k: int) -> ReportData | None:
    """The report of ``evaluation`` (None before the first champion prediction)."""
    champion, windows = evaluation.champion, evaluation.windows
    if champion is None or windows is None:
        return None
    by_version: dict[str, str] = {}
    for alias, version in sorted(aliases.items()):
        by_version.setdefault(version, alias)
    start, recent = windows.label_start_us, windows.recent_start_us
    champion_report = _version(champion, evaluation.rows[f"{CHAMPION}:{champion.model_version}"],
                               CHAMPION, start, recent, sla_ms, k, None)
    shadows = tuple(
        _version(audit, evaluation.rows[f"{SHADOW}:{audit.model_version}"],
                 by_version.get(audit.model_version, SHADOW), start, recent, sla_ms, k,
                 verdicts.get(audit.model_version))
        for audit in evaluation.shadows)
    return ReportData(model_name=evaluation.model_name, generated_at=evaluation.evaluated_at,
                      window=windows.describe(), champion=champion_report, shadows=shadows,
                      latency_sla_ms=sla_ms)


def render(data: ReportData) -> str:
    return render_report(data)
