"""The HTML audit report: escaping, empty data, summary figures and curves.

The page is parsed with the standard library's HTML parser, never matched
with hand-written expectations of the markup: what is checked is what a
reader sees (cell values, messages) and what was drawn (the SVG path of each
curve, compared point by point with scikit-learn).
"""

from __future__ import annotations

import math
import os
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from rtml_shadow_auditor.report import (
    ReportData,
    Verdict,
    VersionReport,
    charts,
    render,
    render_report,
    write_report,
)

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def _version(
    rng: np.random.Generator,
    version: str,
    alias: str,
    y: np.ndarray,
    matured: np.ndarray,
    separation: float,
    verdict: Verdict | None = None,
) -> VersionReport:
    """Scores that separate fraud by ``separation``; its metrics computed from the data."""
    scores = np.clip(rng.normal(0.15 + separation * y, 0.12), 0.0, 1.0)
    labels = [int(v) if m else None for v, m in zip(y, matured, strict=True)]
    latency = rng.gamma(2.0, 3.0, 400)
    at = [T0 + timedelta(seconds=30 * i) for i in range(400)]
    metrics = {
        "auc": float(roc_auc_score(y[matured], scores[matured])),
        "ap": float(average_precision_score(y[matured], scores[matured])),
        "latency_p50_ms": float(np.percentile(latency, 50)),
        "latency_p99_ms": float(np.percentile(latency, 99)),
        "matured_labels": int(matured.sum()),
        "errors": 0,
        "sla_ok": bool(np.percentile(latency, 99) < 20.0),
    }
    if alias != "champion":
        metrics["psi"] = float(rng.uniform(0, 0.2))
        metrics["agreement"] = float(rng.uniform(0.9, 1.0))
    return VersionReport(version, alias, scores, labels, latency, at, metrics, verdict)


def sample(model_name: str = "fraud-detector", alias: str = "challenger") -> ReportData:
    rng = np.random.default_rng(7)
    n = 3000
    y = (rng.random(n) < 0.08).astype(float)
    matured = rng.random(n) < 0.7
    champion = _version(rng, "4", "champion", y, matured, 0.45)
    shadow = _version(
        rng, "5", alias, y, matured, 0.55, Verdict("hold", ("only 2100 of 5000 labels matured",))
    )
    return ReportData(model_name, T0, "last 24 h", champion, (shadow,), latency_sla_ms=20.0)


class _Page(HTMLParser):
    """Collects the parts of the page the tests look at."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cells: list[dict[str, str]] = []
        self.figures: dict[str, str] = {}  # figure id -> class
        self.no_data: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []
        self.paths: dict[str, list[str]] = {}  # <g id> -> d of the paths inside it
        self._cell: dict[str, str] | None = None
        self._no_data = False
        self._groups: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if tag == "td" and "data-metric" in a:
            self._cell = {**a, "text": ""}
        if tag == "figure":
            self.figures[a["id"]] = a["class"]
        if tag == "p" and a.get("class") == "no-data":
            self._no_data = True
            self.no_data.append("")
        if tag == "g":
            self._groups.append(a.get("id"))
        if tag == "path":
            for gid in self._groups:
                if gid:
                    self.paths.setdefault(gid, []).append(a.get("d", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.cells.append(self._cell)
            self._cell = None
        if tag == "p":
            self._no_data = False
        if tag == "g" and self._groups:
            self._groups.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell["text"] += data
        if self._no_data:
            self.no_data[-1] += data


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def _points(d: str) -> np.ndarray:
    """(x, y) vertices of an SVG path made of M/L commands (what matplotlib writes for lines)."""
    assert re.fullmatch(r"[MLz\s\d.eE+-]+", d), d[:80]
    numbers = [float(t) for t in re.findall(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?", d)]
    return np.array(numbers).reshape(-1, 2)


def test_user_text_is_escaped() -> None:
    evil = '<script>alert("x")</script>&'
    data = sample(model_name=evil, alias="shadow-<b>1</b>")
    reason = "<img src=x onerror=alert(1)>"
    data = ReportData(
        data.model_name,
        data.generated_at,
        "window <i>1</i>",
        data.champion,
        (
            VersionReport(
                data.shadows[0].version,
                data.shadows[0].alias,
                data.shadows[0].scores,
                data.shadows[0].labels,
                verdict=Verdict("hold", (reason,)),
            ),
        ),
    )
    html = render_report(data)
    page = parse(html)
    assert "<script" not in html and "<img" not in html and "<b>" not in html and "<i>" not in html
    text = "".join(page.text)
    assert f"Shadow audit: {evil}" in text  # shown literally, not interpreted
    assert reason in text and "window <i>1</i>" in text
    assert "v5 (shadow-<b>1</b>)" in text
    assert not {"script", "img", "b", "i", "iframe"} & set(page.tags)


def test_page_is_self_contained() -> None:
    html = render_report(sample())
    page = parse(html)
    assert not {"script", "link", "img", "iframe", "object"} & set(page.tags)
    # SVG namespace URIs are names, not fetches; nothing may point to a URL.
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    assert "url(http" not in html and "@import" not in html


def test_summary_table_shows_the_report_data_figures() -> None:
    data = sample()
    page = parse(render_report(data))
    by_cell = {(c["data-version"], c["data-metric"]): c for c in page.cells}
    for version in data.versions:
        for key, value in version.metrics.items():
            cell = by_cell[(version.version, key)]
            assert cell["text"] == render.format_value(value)
            if isinstance(value, float):
                assert float(cell["data-value"]) == value  # exact, not rounded
                assert float(cell["text"]) == pytest.approx(value, abs=5e-5)
            elif isinstance(value, bool):
                assert cell["text"] == ("yes" if value else "no")
            else:
                assert int(cell["text"].replace(",", "")) == value
    # The champion has no PSI/agreement of its own: shown as missing, not as 0.
    assert by_cell[("4", "psi")]["text"] == "—" and by_cell[("4", "psi")]["data-value"] == ""
    assert len(page.cells) == len(data.versions) * len(
        {k for v in data.versions for k in v.metrics}
    )


def test_roc_and_pr_curves_are_sklearns_points() -> None:
    data = sample()
    html = render_report(data)
    page = parse(html)
    for index, version in enumerate(data.versions):
        y = version.labels[version.matured].astype(int)
        s = version.scores[version.matured]
        fpr, tpr, _ = roc_curve(y, s)
        got = charts.roc_points(version)
        assert got is not None
        np.testing.assert_array_equal(got[0], fpr)
        np.testing.assert_array_equal(got[1], tpr)

        # What is drawn: the path holds every ROC point, mapped by one linear
        # transform per axis (data -> SVG coordinates; y points down).
        (d,) = page.paths[f"roc-curve-{index}"]
        xy = _points(d)
        assert len(xy) == len(fpr)
        for data_axis, svg_axis in ((fpr, xy[:, 0]), (tpr, xy[:, 1])):
            slope, intercept = np.polyfit(data_axis, svg_axis, 1)
            assert abs(slope) > 100  # a real plot area, not a collapsed line
            np.testing.assert_allclose(slope * data_axis + intercept, svg_axis, atol=0.01)

        precision, recall, _ = precision_recall_curve(y, s)
        pr = charts.pr_points(version)
        assert pr is not None
        np.testing.assert_array_equal(pr[0], recall)
        np.testing.assert_array_equal(pr[1], precision)
        assert f"pr-curve-{index}" in page.paths
    assert "latency-sla-line" in page.paths
    assert page.figures == {
        "scores-1": "chart",
        "roc": "chart",
        "pr": "chart",
        "latency": "chart",
    }


def test_empty_report_renders_with_messages() -> None:
    empty = VersionReport("1", "champion", [], [])
    page = parse(render_report(ReportData("m", T0, "nothing yet", empty)))
    assert all("chart-empty" in cls for cls in page.figures.values())
    assert set(page.figures) == {"scores-0", "roc", "pr", "latency"}
    messages = " | ".join(page.no_data)
    assert "no matured labels yet" in messages
    assert "no latency samples" in messages
    assert "no scores in this window yet" in messages
    assert "nothing to audit" in messages
    assert page.cells == []


def test_unmatured_and_one_class_labels_say_why_no_curve() -> None:
    scores = np.linspace(0, 1, 50)
    unmatured = VersionReport("1", "champion", scores, [None] * 50)
    page = parse(render_report(ReportData("m", T0, "w", unmatured)))
    assert page.figures["scores-0"] == "chart"  # scores are there: drawn
    assert page.figures["roc"] == page.figures["pr"] == "chart chart-empty"
    assert "no matured labels yet" in page.no_data

    one_class = VersionReport("2", "challenger", scores, [0] * 50)
    page = parse(render_report(ReportData("m", T0, "w", unmatured, (one_class,))))
    assert page.figures["roc"] == "chart chart-empty"
    assert any("all of one class" in m for m in page.no_data)

    # One version with a curve, one without: the chart is drawn and says who is missing.
    good = sample().champion
    page = parse(render_report(ReportData("m", T0, "w", good, (unmatured,))))
    assert page.figures["roc"] == "chart" and "roc-curve-0" in page.paths
    assert "roc-curve-1" not in page.paths
    assert "v1 (champion): no matured labels yet" in "".join(page.text)


def test_dollar_and_backslash_in_names_do_not_break_matplotlib() -> None:
    page = parse(render_report(sample(alias=r"shadow-$x^2$\n")))
    assert page.figures["roc"] == "chart"
    assert r"v5 (shadow-$x^2$\n)" in "".join(page.text)


def test_report_data_is_validated_and_read_only() -> None:
    with pytest.raises(ValueError, match="labels for"):
        VersionReport("1", "champion", [0.1, 0.2], [1])
    with pytest.raises(ValueError, match="0, 1 or None"):
        VersionReport("1", "champion", [0.1], [2])
    with pytest.raises(ValueError, match="finite"):
        VersionReport("1", "champion", [math.nan], [None])
    with pytest.raises(ValueError, match="timestamps"):
        VersionReport("1", "champion", [], [], latency_ms=[1.0], latency_at=[])
    with pytest.raises(ValueError, match="graduate"):
        Verdict("promote")  # type: ignore[arg-type]
    version = sample().champion
    with pytest.raises(ValueError, match="read-only"):
        version.scores[0] = 1.0
    assert version.latency_at[0] == T0.timestamp()


def test_write_report_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = sample(model_name="../fraud detector/é")
    path = write_report(data, tmp_path / "reports")
    assert path.parent == tmp_path / "reports"  # the model name cannot escape the folder
    assert path.read_text(encoding="utf-8") == render_report(data)
    assert [p.name for p in path.parent.iterdir()] == [path.name]

    def fail(*_: object) -> None:
        raise OSError("disk full")

    before = path.read_bytes()
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_report(sample(), path.parent, filename=path.name)
    assert path.read_bytes() == before  # the previous report is intact
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    with pytest.raises(ValueError, match="bare file name"):
        write_report(data, tmp_path, filename="../x.html")


def test_metric_rows_follow_the_documented_order_with_any_k() -> None:
    scores = np.linspace(0, 1, 10)
    metrics = {"custom_figure": 3, "cp_at_50": 0.42, "auc": 0.9, "errors": 1}
    champion = VersionReport("1", "champion", scores, [None] * 10, metrics=metrics)
    page = parse(render_report(ReportData("m", T0, "w", champion)))
    assert [c["data-metric"] for c in page.cells] == ["auc", "cp_at_50", "errors", "custom_figure"]
    text = "".join(page.text)
    assert "Card precision@50" in text and "custom_figure" in text
