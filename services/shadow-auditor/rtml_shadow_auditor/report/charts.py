"""The report's charts, each drawn with matplotlib to an inline SVG string.

SVG rather than PNG: it stays sharp when zoomed, keeps the page one text file
and lets a test (or a curious reader) find each curve by its ``id``. Every
drawn curve gets a stable SVG id such as ``roc-curve-0`` (chart id, then
``curve-<i>``, ``<i>`` the index of the version in :attr:`ReportData.versions`)
so tests can check it was drawn; ``latency-sla-line`` is the SLA line.

The object-oriented ``Figure`` API is used, never ``pyplot``: no global
figure registry, so no figure is leaked. The style is applied with
``rc_context``, which swaps matplotlib's global ``rcParams``; each chart
function therefore holds one module lock while it draws, so two reports
rendered in different threads cannot restore each other's settings mid-draw.
Path simplification is off so a curve's SVG path holds every point sklearn
returned (what the ROC test compares).

A chart function returns :class:`Chart`; when there is nothing to draw (no
matured labels, one class only, no latency samples) ``svg`` is ``None`` and
``message`` says why, and the page shows that message instead.
"""

from __future__ import annotations

import functools
import io
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec

import matplotlib
import numpy as np
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from rtml_shadow_auditor.report.data import FloatArray, VersionReport

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

#: Colours per version index (champion first), colour-blind-safe (Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
#: Score histogram bins over [0, 1].
SCORE_BINS = 50
#: Latency is summarised per time bucket (p50 / p99) so a day of samples
#: stays a readable curve and a small SVG; fewer samples are drawn as they are.
LATENCY_BUCKETS = 60

_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",  # text stays text: smaller, selectable, escaped by matplotlib
    "svg.hashsalt": "rtml-shadow-auditor",  # deterministic ids: same data, same page
    "path.simplify": False,
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
_DRAWING = threading.Lock()
P = ParamSpec("P")
_SVG_START = re.compile(r"<svg\b")
_SVG_ID = re.compile(r'\bid="([^"]+)"')


@dataclass(frozen=True)
class Chart:
    """One rendered chart: ``svg`` markup, or ``None`` and a ``message`` saying why not.

    ``notes`` are per-version remarks shown under a drawn chart (e.g. a
    shadow left out of the ROC chart because none of its labels matured).
    """

    svg: str | None
    message: str = ""
    notes: tuple[str, ...] = ()


def _serialised(draw: Callable[P, Chart]) -> Callable[P, Chart]:
    """Run ``draw`` under the module lock (see the module docstring)."""

    @functools.wraps(draw)
    def locked(*args: P.args, **kwargs: P.kwargs) -> Chart:
        with _DRAWING:
            return draw(*args, **kwargs)

    return locked


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def plain(text: str) -> str:
    """Text for a matplotlib label: ``$`` would start mathtext (and can raise)."""
    return text.replace("\\", "\\\\").replace("$", r"\$")


def _to_svg(fig: Figure, prefix: str) -> str:
    """The figure as bare ``<svg>`` markup, every SVG id prefixed with ``prefix-``.

    The XML prolog and DOCTYPE are dropped (not allowed inside HTML). Prefixing
    matters because matplotlib names things ``figure_1``, ``axes_1``, ... in
    every SVG: several on one page would repeat ids (and could clip against
    another chart's ``clipPath``).
    """
    buffer = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    match = _SVG_START.search(text)
    if match is None:  # pragma: no cover - matplotlib always writes an <svg> root
        raise RuntimeError("matplotlib produced no <svg> element")
    svg = text[match.start() :]
    ids = sorted(set(_SVG_ID.findall(svg)), key=len, reverse=True)
    if ids:
        alternatives = "|".join(re.escape(i) for i in ids)
        svg = re.sub(
            rf'(\bid="|url\(#|href="#)({alternatives})(?=[")])',
            lambda m: f"{m.group(1)}{prefix}-{m.group(2)}",
            svg,
        )
    return svg


def _figure(width: float = 6.4, height: float = 3.6) -> Figure:
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), layout="constrained")


def roc_points(version: VersionReport) -> tuple[FloatArray, FloatArray] | None:
    """(fpr, tpr) of the version's matured transactions; ``None`` without both classes."""
    mask = version.matured
    labels = version.labels[mask]
    if labels.size == 0 or np.unique(labels).size < 2:
        return None
    fpr, tpr, _ = roc_curve(labels.astype(int), version.scores[mask])
    return fpr.astype(np.float64), tpr.astype(np.float64)


def pr_points(version: VersionReport) -> tuple[FloatArray, FloatArray] | None:
    """(recall, precision) of the version's matured transactions; ``None`` without both classes."""
    mask = version.matured
    labels = version.labels[mask]
    if labels.size == 0 or np.unique(labels).size < 2:
        return None
    precision, recall, _ = precision_recall_curve(labels.astype(int), version.scores[mask])
    return recall.astype(np.float64), precision.astype(np.float64)


def _why_no_curve(version: VersionReport) -> str:
    matured = version.matured_count
    if matured == 0:
        return f"{version.display_name}: no matured labels yet"
    return (
        f"{version.display_name}: {matured} matured labels, all of one class "
        "(a curve needs fraud and legitimate)"
    )


@_serialised
def score_distribution(
    champion: VersionReport, shadow: VersionReport | None, shadow_index: int
) -> Chart:
    """Histogram of champion scores against one shadow's (density, log scale).

    Log scale because fraud scores pile up near 0: on a linear axis the tail,
    where the two models actually differ, is invisible.
    """
    pairs = [(0, champion)] + ([(shadow_index, shadow)] if shadow is not None else [])
    drawn = [(i, v) for i, v in pairs if v.scores.size]
    if not drawn:
        return Chart(None, "no scores in this window yet")
    with matplotlib.rc_context(_RC):
        fig = _figure()
        ax = fig.add_subplot()
        edges = np.linspace(0.0, 1.0, SCORE_BINS + 1)
        for index, version in drawn:
            counts, _ = np.histogram(np.clip(version.scores, 0.0, 1.0), bins=edges)
            density = counts / max(counts.sum(), 1)
            (line,) = ax.step(
                edges,
                np.append(density, density[-1]),
                where="post",
                color=colour(index),
                label=plain(f"{version.display_name}, n={version.scores.size:,}"),
            )
            line.set_gid(f"curve-{index}")
        ax.set_yscale("log")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("score")
        ax.set_ylabel("share of transactions (log)")
        ax.legend(loc="upper right")
        return Chart(_to_svg(fig, f"scores-{shadow_index}"))


def _curves(
    versions: Sequence[VersionReport],
    points: str,
) -> Chart:
    """ROC (``points="roc"``) or precision-recall (``"pr"``) curves of every version."""
    curves: list[tuple[int, VersionReport, FloatArray, FloatArray]] = []
    notes: list[str] = []
    for index, version in enumerate(versions):
        xy = roc_points(version) if points == "roc" else pr_points(version)
        if xy is None:
            notes.append(_why_no_curve(version))
        else:
            curves.append((index, version, *xy))
    if not curves:
        if all(v.matured_count == 0 for v in versions):
            return Chart(None, "no matured labels yet")
        return Chart(None, "; ".join(notes))
    with matplotlib.rc_context(_RC):
        fig = _figure(4.8, 4.2)
        ax = fig.add_subplot()
        for index, version, x, y in curves:
            label = plain(f"{version.display_name}, {version.matured_count:,} labels")
            if points == "roc":
                (line,) = ax.plot(x, y, color=colour(index), label=label)
            else:
                (line,) = ax.step(x, y, where="post", color=colour(index), label=label)
            line.set_gid(f"curve-{index}")
        if points == "roc":
            (chance,) = ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1)
            chance.set_gid("chance")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
        else:
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.02)
        ax.legend(loc="lower right" if points == "roc" else "lower left")
        return Chart(_to_svg(fig, points), notes=tuple(notes))


@_serialised
def roc_chart(versions: Sequence[VersionReport]) -> Chart:
    """ROC curves on matured labels, sklearn's ``roc_curve`` points drawn as given."""
    return _curves(versions, "roc")


@_serialised
def pr_chart(versions: Sequence[VersionReport]) -> Chart:
    """Precision-recall curves (what AP summarises; fraud is rare so this is the telling one)."""
    return _curves(versions, "pr")


def _bucketed(at: FloatArray, ms: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(bucket middle, p50, p99) per non-empty time bucket."""
    order = np.argsort(at, kind="stable")
    at, ms = at[order], ms[order]
    if at.size <= LATENCY_BUCKETS:
        return at, ms, ms
    edges = np.linspace(at[0], at[-1], LATENCY_BUCKETS + 1)
    which = np.clip(np.searchsorted(edges, at, side="right") - 1, 0, LATENCY_BUCKETS - 1)
    mids, p50, p99 = [], [], []
    for bucket in range(LATENCY_BUCKETS):
        sample = ms[which == bucket]
        if sample.size:
            mids.append((edges[bucket] + edges[bucket + 1]) / 2)
            p50.append(float(np.percentile(sample, 50)))
            p99.append(float(np.percentile(sample, 99)))
    return np.array(mids), np.array(p50), np.array(p99)


@_serialised
def latency_chart(versions: Sequence[VersionReport], sla_ms: float | None) -> Chart:
    """Latency over time per version (p99 solid, p50 dashed per bucket) and the SLA line."""
    present = [(i, v) for i, v in enumerate(versions) if v.latency_ms.size]
    if not present:
        return Chart(None, "no latency samples in this window yet")
    notes = tuple(
        f"{v.display_name}: no latency samples" for v in versions if not v.latency_ms.size
    )
    with matplotlib.rc_context(_RC):
        fig = _figure(9.6, 3.6)
        ax = fig.add_subplot()
        for index, version in present:
            at, p50, p99 = _bucketed(version.latency_at, version.latency_ms)
            when = np.round(at * 1e6).astype(np.int64).astype("datetime64[us]")
            raw = at.size == version.latency_ms.size and at.size <= LATENCY_BUCKETS
            name = plain(version.display_name)
            (line,) = ax.plot(
                when,
                p99,
                color=colour(index),
                marker="." if raw else None,
                label=f"{name}" if raw else f"{name} p99",
            )
            line.set_gid(f"curve-{index}")
            if not raw:
                (median,) = ax.plot(
                    when,
                    p50,
                    color=colour(index),
                    linestyle="--",
                    linewidth=1,
                    label=f"{name} p50",
                )
                median.set_gid(f"p50-curve-{index}")
        if sla_ms is not None:
            sla = ax.axhline(
                sla_ms, color="#D00000", linestyle="-.", linewidth=1.2, label=f"SLA {sla_ms:g} ms"
            )
            sla.set_gid("sla-line")
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.set_ylim(bottom=0)
        ax.set_xlabel("time (UTC)")
        ax.set_ylabel("latency (ms)")
        ax.legend(loc="upper left", ncols=2)
        return Chart(_to_svg(fig, "latency"), notes=notes)
