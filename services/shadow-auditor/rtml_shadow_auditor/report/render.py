"""ReportData -> one self-contained HTML page, and writing it atomically.

Self-contained: inline CSS and inline SVG, no script and no external URL, so
the page opens on a machine without network (our CI and ops boxes) and can be
attached to a ticket as one file. Every piece of text from the data (model
name, aliases, versions, reasons, metric names) goes through :func:`html.escape`.

Stable hooks for tests and readers: each chart is a
``<figure class="chart" id="...">`` (``scores-<i>``, ``roc``, ``pr``,
``latency``; ``<i>`` = index in :attr:`ReportData.versions`), an empty chart
has class ``chart-empty`` and a ``<p class="no-data">`` message, and each
summary cell carries ``data-metric``, ``data-version`` and the exact value in
``data-value``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from html import escape
from pathlib import Path

from rtml_common.files import write_bytes_atomically
from rtml_shadow_auditor.report import charts
from rtml_shadow_auditor.report.charts import Chart
from rtml_shadow_auditor.report.data import METRIC_LABELS, MetricValue, ReportData, VersionReport

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem auto;max-width:1100px;
color:#1a1a1a;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}
.meta{color:#555;margin:.1rem 0}
table.summary{border-collapse:collapse;margin:1rem 0}
table.summary th,table.summary td{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
table.summary th[scope=row]{text-align:left;font-weight:normal}
table.summary thead th{background:#f3f3f3}
.verdicts{display:flex;flex-wrap:wrap;gap:1rem}
.verdict{border:1px solid #ccc;border-radius:6px;padding:.5rem .9rem;min-width:16rem}
.verdict .decision{font-weight:bold;text-transform:uppercase;padding:.1rem .4rem;border-radius:4px}
.verdict.graduate .decision{background:#d4f4dd;color:#0a5c22}
.verdict.hold .decision{background:#fdebd0;color:#7a4b00}
.charts{display:flex;flex-wrap:wrap;gap:1rem}
figure.chart{margin:0;border:1px solid #e2e2e2;border-radius:6px;padding:.5rem;background:#fff}
figure.chart svg{display:block;max-width:100%;height:auto}
figure.chart figcaption{font-weight:bold;margin-bottom:.3rem}
figure.chart-empty{min-width:20rem;min-height:6rem}
.no-data{color:#777;font-style:italic}
.notes{color:#666;font-size:.85rem;margin:.3rem 0 0;padding-left:1.2rem}
"""


def format_value(value: MetricValue) -> str:
    """How a summary figure is shown: 4 decimals, thousands for counts, — for missing."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if value.is_integer() and abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.4f}"
    return str(value)


def _raw(value: MetricValue) -> str:
    """The exact value for ``data-value`` (``repr`` round-trips floats)."""
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


_CP_AT = re.compile(r"cp_at_(\d+)")


def metric_label(key: str) -> str:
    """The row label of a metric key; ``cp_at_<k>`` for any k, unknown keys as they are."""
    if key in METRIC_LABELS:
        return METRIC_LABELS[key]
    match = _CP_AT.fullmatch(key)
    return f"Card precision@{match.group(1)}" if match else key


def _metric_keys(versions: Iterable[VersionReport]) -> list[str]:
    """Known keys in METRIC_LABELS order (any cp_at_<k> where cp_at_100 sits), then the rest."""
    present = {k for v in versions for k in v.metrics}
    ordered: list[str] = []
    for key in METRIC_LABELS:
        if key == "cp_at_100":
            ordered += sorted((k for k in present if _CP_AT.fullmatch(k)), key=len)
        elif key in present:
            ordered.append(key)
    return ordered + sorted(present - set(ordered))


def _summary_table(data: ReportData) -> str:
    versions = data.versions
    keys = _metric_keys(versions)
    head = "".join(
        f'<th scope="col" data-version="{escape(v.version)}">{escape(v.display_name)}</th>'
        for v in versions
    )
    rows = []
    for key in keys:
        cells = []
        for v in versions:
            value = v.metrics.get(key)
            cells.append(
                f'<td data-metric="{escape(key)}" data-version="{escape(v.version)}" '
                f'data-value="{escape(_raw(value))}">{escape(format_value(value))}</td>'
            )
        label = metric_label(key)
        rows.append(
            f'<tr data-metric="{escape(key)}"><th scope="row">{escape(label)}</th>'
            f"{''.join(cells)}</tr>"
        )
    if not rows:
        body = (
            f'<tr><td colspan="{len(versions) + 1}" class="no-data">'
            "no summary figures yet</td></tr>"
        )
    else:
        body = "".join(rows)
    return (
        '<table class="summary" id="summary"><thead><tr><th scope="col">metric</th>'
        f"{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _verdicts(data: ReportData) -> str:
    if not data.shadows:
        return '<p class="no-data">no shadow versions in this window: nothing to audit</p>'
    cards = []
    for v in data.shadows:
        if v.verdict is None:
            cards.append(
                f'<div class="verdict pending" data-version="{escape(v.version)}">'
                f'<div>{escape(v.display_name)}: <span class="decision">no verdict</span></div>'
                "</div>"
            )
            continue
        reasons = "".join(f"<li>{escape(r)}</li>" for r in v.verdict.reasons)
        cards.append(
            f'<div class="verdict {escape(v.verdict.decision)}" data-version="{escape(v.version)}">'
            f'<div>{escape(v.display_name)}: <span class="decision">'
            f"{escape(v.verdict.decision)}</span></div>"
            f"{f'<ul>{reasons}</ul>' if reasons else ''}</div>"
        )
    return f'<div class="verdicts">{"".join(cards)}</div>'


def _figure(chart_id: str, caption: str, chart: Chart) -> str:
    notes = (
        '<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in chart.notes) + "</ul>"
        if chart.notes
        else ""
    )
    if chart.svg is None:
        return (
            f'<figure class="chart chart-empty" id="{chart_id}">'
            f"<figcaption>{escape(caption)}</figcaption>"
            f'<p class="no-data">{escape(chart.message)}</p>{notes}</figure>'
        )
    return (
        f'<figure class="chart" id="{chart_id}"><figcaption>{escape(caption)}</figcaption>'
        f"{chart.svg}{notes}</figure>"
    )


def _charts(data: ReportData) -> str:
    champion = data.champion
    parts = []
    if data.shadows:
        for index, shadow in enumerate(data.shadows, start=1):
            parts.append(
                _figure(
                    f"scores-{index}",
                    f"Score distribution: {champion.display_name} vs {shadow.display_name}",
                    charts.score_distribution(champion, shadow, index),
                )
            )
    else:
        parts.append(
            _figure(
                "scores-0",
                f"Score distribution: {champion.display_name}",
                charts.score_distribution(champion, None, 0),
            )
        )
    parts.append(_figure("roc", "ROC curves (matured labels)", charts.roc_chart(data.versions)))
    parts.append(
        _figure("pr", "Precision-recall curves (matured labels)", charts.pr_chart(data.versions))
    )
    parts.append(
        _figure(
            "latency",
            "Scoring latency over time",
            charts.latency_chart(data.versions, data.latency_sla_ms),
        )
    )
    return f'<div class="charts">{"".join(parts)}</div>'


def render_report(data: ReportData) -> str:
    """The audit report as one self-contained HTML document."""
    title = f"Shadow audit: {data.model_name}"
    generated = data.generated_at.strftime("%Y-%m-%d %H:%M:%S %Z")
    sla = "" if data.latency_sla_ms is None else f" · latency SLA (p99) {data.latency_sla_ms:g} ms"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f'<header><h1 id="title">{escape(title)}</h1>'
        f'<p class="meta" id="window">Window: {escape(data.window)}</p>'
        f'<p class="meta" id="generated">Generated {escape(generated)}{escape(sla)}</p>'
        "</header>"
        f"<section><h2>Verdicts</h2>{_verdicts(data)}</section>"
        f"<section><h2>Summary</h2>{_summary_table(data)}</section>"
        f"<section><h2>Charts</h2>{_charts(data)}</section>"
        "</body></html>\n"
    )


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def report_filename(data: ReportData) -> str:
    """``shadow-audit_<model>_<UTC time>.html`` with anything unsafe for a path replaced."""
    model = _UNSAFE.sub("-", data.model_name).strip("-.") or "model"
    return f"shadow-audit_{model}_{data.generated_at.strftime('%Y%m%dT%H%M%SZ')}.html"


def write_atomically(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` durably and atomically, world-readable.

    A reader (a web server, a person refreshing) never sees a half-written
    page, a crash leaves the previous file, and 0o644 lets the web server
    serving the report directory read it whatever our umask.
    """
    return write_bytes_atomically(path, text.encode("utf-8"), durable=True, mode=0o644)


def write_report(
    data: ReportData, directory: str | os.PathLike[str], filename: str | None = None
) -> Path:
    """Render and write the report into ``directory`` (see :func:`write_atomically`)."""
    name = filename or report_filename(data)
    if Path(name).name != name:
        raise ValueError(f"filename must be a bare file name, not a path: {name!r}")
    return write_atomically(Path(directory) / name, render_report(data))
