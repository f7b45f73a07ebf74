"""The shadow auditor's HTML audit report.

Build a :class:`ReportData` (see :mod:`.data` for what each field means), then
:func:`render_report` gives a self-contained HTML page (inline CSS and SVG
charts, no scripts, nothing fetched from the network, so it opens offline and
can be archived as one file) and :func:`write_report` writes it atomically.
"""

from __future__ import annotations

from rtml_shadow_auditor.report.data import (
    METRIC_LABELS,
    MetricValue,
    ReportData,
    Verdict,
    VersionReport,
)
from rtml_shadow_auditor.report.render import render_report, report_filename, write_report

__all__ = [
    "METRIC_LABELS",
    "MetricValue",
    "ReportData",
    "Verdict",
    "VersionReport",
    "render_report",
    "report_filename",
    "write_report",
]
