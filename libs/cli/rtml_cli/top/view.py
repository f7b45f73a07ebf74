"""Drawing a frame with rich: pure functions of a :class:`~rtml_cli.top.frame.Frame`.

The same renderables serve the live view (colours, alternate screen) and
``--once`` (a console without colours, wide enough that no table is cut).
A panel whose metrics are absent says "no data yet"; a cell without data
shows ``-``; NaN (a quantile over a window without traffic) shows ``idle``,
a NaN ratio ``n/a``.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from rtml_cli.top.client import Sample
from rtml_cli.top.frame import Frame, PanelData
from rtml_cli.top.queries import IGNORED_JOBS, OUTCOMES, PLATFORM_SERVICES

T = TypeVar("T")

NO_DATA = "no data yet"
MISSING = "-"
IDLE = "idle"


# -- formatting ----------------------------------------------------------------

def _number(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def fmt_count(value: float | None) -> str:
    if value is None:
        return MISSING
    return IDLE if math.isnan(value) else f"{round(value):,}"


def fmt_rate(value: float | None) -> str:
    """Per-second rate: two decimals below 10/s, one above."""
    if value is None:
        return MISSING
    if math.isnan(value):
        return IDLE
    return f"{_number(value, 2 if abs(value) < 10 else 1)}/s"


def fmt_seconds(value: float | None) -> str:
    """A duration, in ms below one second."""
    if value is None:
        return MISSING
    if math.isnan(value):
        return IDLE
    if math.isinf(value):
        return "> top bucket"
    return f"{value * 1000:.1f} ms" if abs(value) < 1 else f"{_number(value, 2)} s"


def fmt_ratio(value: float | None, digits: int = 3) -> str:
    """A ratio or score; NaN (e.g. PSI of an empty bin set) reads ``n/a``."""
    if value is None:
        return MISSING
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def fmt_share(part: float | None, whole: float | None) -> str:
    """``part / whole`` as a percentage; ``-`` when the whole is 0 or unknown."""
    if part is None or whole is None or not whole or math.isnan(whole):
        return MISSING
    return f"{100 * part / whole:.3g}%"


def _version_key(version: str) -> tuple[int, float, str]:
    """Numeric versions in numeric order, others after them."""
    return (0, float(version), "") if re.fullmatch(r"[0-9]+(\.[0-9]+)?", version) \
        else (1, 0.0, version)


def _reason(labels: Mapping[str, str]) -> str:
    """``reason_code (rule)``; the rule alone for series exported before reason codes were."""
    code = labels.get("reason_code")
    return f"{code} ({labels['rule']})" if code else labels["rule"]


def by_label(samples: Iterable[Sample], label: str) -> dict[str, float]:
    """``{label value: sample value}`` (series without the label are dropped)."""
    return {s.labels[label]: s.value for s in samples if label in s.labels}


# -- building blocks -------------------------------------------------------------

def _table(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, padding=(0, 2), header_style="bold")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=True)
    return table


def _note(text: str, style: str = "dim") -> Text:
    return Text(text, style=style)


Body = Callable[[PanelData, "int | None"], RenderableType]


def _panel(data: PanelData, body: Body, max_rows: int | None) -> RenderableType:
    """Title, then the body, or "no data yet", or the queries Prometheus refused."""
    parts: list[RenderableType] = [
        Text.assemble((data.panel.title, "bold cyan"), (f"  ({data.panel.source})", "dim"))]
    for key, error in data.errors.items():
        parts.append(_note(f"query {key!r} failed: {error}", "red"))
    if data.empty:
        if not data.errors:
            parts.append(_note(f"{NO_DATA} (no series of these metrics in Prometheus)"))
    else:
        parts.append(body(data, max_rows))
    return Group(*parts, Text(""))


# -- panels ---------------------------------------------------------------------

def services_body(data: PanelData, max_rows: int | None = None) -> RenderableType:
    """Per service: supervisor's view (up, restarts), scrape health, throughput, lag.

    Consumer lag is the age of the newest record when it was read (it stays put
    while a topic is idle: a stuck consumer shows as throughput 0); uncommitted
    is read minus committed offsets, what a crash now would replay.
    """
    up = by_label(data.samples("up"), "service")
    restarts = by_label(data.samples("restarts"), "service")
    scraped = by_label(data.samples("scraped"), "job")
    consumed = by_label(data.samples("consumed"), "job")
    requests = by_label(data.samples("requests"), "job")
    lag = by_label(data.samples("lag"), "job")
    uncommitted = by_label(data.samples("uncommitted"), "job")
    seen = set().union(up, restarts, scraped, consumed, requests, lag, uncommitted) \
        - set(IGNORED_JOBS)
    names = [*PLATFORM_SERVICES, *sorted(seen - set(PLATFORM_SERVICES))]
    table = _table("service", "up", "scrape", "restarts", "consumed", "requests",
                   "consumer lag", "uncommitted")
    for name in names:
        state = up.get(name)
        scrape = scraped.get(name)
        table.add_row(
            name,
            MISSING if state is None else (Text("up", "green") if state >= 1
                                           else Text("DOWN", "bold red")),
            MISSING if scrape is None else (Text("ok", "green") if scrape >= 1
                                            else Text("failing", "bold red")),
            fmt_count(restarts.get(name)),
            fmt_rate(consumed.get(name)),
            fmt_rate(requests.get(name)),
            fmt_seconds(lag.get(name)),
            fmt_count(uncommitted.get(name)),
        )
    return table


def decisions_body(data: PanelData, max_rows: int | None = None) -> RenderableType:
    """Rate, latency, outcome mix, degraded answers and the most frequent reasons."""
    total = data.scalar("total")
    degraded = by_label(data.samples("degraded"), "reason")
    # The degraded counter appears at the first fallback answer: 0 until then.
    degraded_total = sum(degraded.values()) if degraded else (0.0 if total is not None
                                                               else None)
    summary = _table("decisions/s", "decisions", "p50", "p99", "degraded")
    summary.add_row(fmt_rate(data.scalar("rate")), fmt_count(total),
                    fmt_seconds(data.scalar("p50")), fmt_seconds(data.scalar("p99")),
                    fmt_count(degraded_total))

    counts = by_label(data.samples("outcomes"), "outcome")
    rates = by_label(data.samples("outcome_rates"), "outcome")
    mix = _table("outcome", "decisions", "share", "rate")
    for outcome in [*OUTCOMES, *sorted(set(counts) - set(OUTCOMES))]:
        count = counts.get(outcome, 0.0 if counts else None)
        mix.add_row(outcome, fmt_count(count), fmt_share(count, total),
                    fmt_rate(rates.get(outcome, 0.0 if rates else None)))

    reasons = _table("top reason codes (rule)", "fired")
    fired = sorted(((_reason(s.labels), s.value) for s in data.samples("reasons")
                    if "rule" in s.labels), key=lambda kv: -kv[1])
    for reason, count in fired:
        reasons.add_row(reason, fmt_count(count))
    if not fired:
        reasons.add_row(MISSING, MISSING)

    side: list[RenderableType] = [mix, reasons]
    if degraded:
        by_reason = _table("degraded by reason", "answers")
        for reason, count in sorted(degraded.items(), key=lambda kv: -kv[1]):
            by_reason.add_row(reason, fmt_count(count))
        side.append(by_reason)
    grid = Table.grid(padding=(0, 6))
    grid.add_row(*side)
    return Group(summary, grid)


def models_body(data: PanelData, max_rows: int | None = None) -> RenderableType:
    """Champion and shadow versions: live scoring rate, and the auditor's figures."""
    rows: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    aliases: dict[tuple[str, str], set[str]] = defaultdict(set)
    for key in ("scored", "agreement", "auc", "ap", "matured"):
        for sample in data.samples(key):
            row = (sample.label("role", "?"), sample.label("model_version", "?"))
            rows[row][key] = rows[row].get(key, 0.0) + sample.value if key == "scored" \
                else sample.value
            if key == "scored" and sample.label("alias"):
                aliases[row].add(sample.label("alias"))
    table = _table("role", "version", "alias", "scored", "agreement", "ROC AUC", "AP",
                   "matured labels")
    order = sorted(rows, key=lambda r: (r[0] != "champion", r[0], _version_key(r[1])))
    for role, version in order:
        figures = rows[(role, version)]
        awaiting = "awaiting labels" if "matured" in figures else MISSING
        table.add_row(
            Text(role, "bold") if role == "champion" else role, f"v{version}",
            ",".join(sorted(aliases[(role, version)])) or MISSING,
            fmt_rate(figures.get("scored")),
            fmt_ratio(figures.get("agreement")),
            fmt_ratio(figures["auc"]) if "auc" in figures else awaiting,
            fmt_ratio(figures["ap"]) if "ap" in figures else awaiting,
            fmt_count(figures.get("matured")),
        )
    return table


def freshness_body(data: PanelData, max_rows: int | None = None) -> RenderableType:
    """Produce-to-online-store latency of transactions, and the pipeline's output rate."""
    table = _table("freshness p50", "freshness p99", "transactions measured", "vectors",
                   "late transactions")
    table.add_row(fmt_seconds(data.scalar("p50")), fmt_seconds(data.scalar("p99")),
                  fmt_count(data.scalar("measured")), fmt_rate(data.scalar("vectors")),
                  fmt_count(data.scalar("late")))
    return table


def _limit(rows: list[T], max_rows: int | None) -> tuple[list[T], int]:
    """The first ``max_rows`` rows (all without a limit) and how many were left out."""
    if max_rows is None or len(rows) <= max_rows:
        return rows, 0
    return rows[:max_rows], len(rows) - max_rows


def _more(hidden: int, what: str) -> list[RenderableType]:
    return [_note(f"... {hidden} more {what} (rtml top --once lists all)")] if hidden else []


def _peak(values: Iterable[float]) -> float:
    """The largest finite value, 0 without one."""
    return max((v for v in values if math.isfinite(v)), default=0.0)


def drift_body(data: PanelData, max_rows: int | None = None) -> RenderableType:
    """PSI of the latest windows per feature (and the score), highest first."""
    psi: dict[str, dict[str, float]] = defaultdict(dict)
    for sample in data.samples("psi"):
        psi[sample.label("subject", "?")][sample.label("window", "?")] = sample.value
    alerting = {s.label("subject") for s in data.samples("alerts") if s.value >= 1}
    windows = sorted({w for by_window in psi.values() for w in by_window},
                     key=lambda w: (w != "tumbling", w))
    table = _table("subject", *(f"PSI {w}" for w in windows), "alert")
    ranked = sorted(psi.items(), key=lambda kv: (-_peak(kv[1].values()), kv[0]))
    shown, hidden = _limit(ranked, max_rows)
    for subject, by_window in shown:
        table.add_row(subject, *(fmt_ratio(by_window.get(w), 4) for w in windows),
                      Text("ALERT", "bold red") if subject in alerting else "")
    reference = data.scalar("reference")
    header = _note("reference: champion " + (f"v{fmt_count(reference)}" if reference is not None
                                             else "not loaded"))
    return Group(header, table, *_more(hidden, "subjects")) if psi else header


def consistency_body(data: PanelData, max_rows: int | None = None) -> RenderableType:
    """Served vs batch-recomputed features: mismatch rates per feature."""
    checked = by_label(data.samples("checked"), "feature")
    mismatches = by_label(data.samples("mismatches"), "feature")
    checked_all = by_label(data.samples("checked_all"), "feature")
    mismatches_all = by_label(data.samples("mismatches_all"), "feature")
    max_diff = by_label(data.samples("max_diff"), "feature")
    table = _table("feature", "checked (current)", "mismatches", "mismatch rate",
                   "mismatch rate (all lags)", "max |diff|")
    features = sorted(set().union(checked, mismatches, checked_all, max_diff),
                      key=lambda f: (-(mismatches.get(f) or 0.0), f))
    shown, hidden = _limit(features, max_rows)
    for feature in shown:
        wrong = mismatches.get(feature, 0.0 if feature in checked else None)
        table.add_row(feature, fmt_count(checked.get(feature)), fmt_count(wrong),
                      fmt_share(wrong, checked.get(feature)),
                      fmt_share(mismatches_all.get(feature, 0.0), checked_all.get(feature)),
                      f"{max_diff[feature]:.3g}" if feature in max_diff else MISSING)
    pending = data.scalar("pending")
    return Group(_note(f"decisions waiting for their data: {fmt_count(pending)}"), table,
                 *_more(hidden, "features"))


BODIES: dict[str, Body] = {
    "services": services_body,
    "decisions": decisions_body,
    "models": models_body,
    "freshness": freshness_body,
    "drift": drift_body,
    "consistency": consistency_body,
}


def header(url: str, note: str) -> Text:
    return Text.assemble(("rtml top", "bold"), f"  Prometheus {url}  ", (note, "dim"))


def render_frame(frame: Frame, hint: str = "", columns: int = 1,
                 max_rows: int | None = None) -> RenderableType:
    """A header line, then every panel in order.

    ``columns=2`` splits the panels over two columns (a wide terminal shows
    more of them at once); ``max_rows`` cuts the per-feature tables to their
    worst rows (a terminal has few lines; ``--once`` shows every row).
    """
    note = f"{frame.taken_at:%Y-%m-%d %H:%M:%S} UTC  rates over {frame.window}"
    head = header(frame.url, note + (f"  {hint}" if hint else ""))
    panels = [_panel(data, BODIES[data.panel.key], max_rows) for data in frame.panels]
    if columns < 2:
        return Group(head, Text(""), *panels)
    grid = Table.grid(padding=(0, 4))
    half = (len(panels) + 1) // 2
    grid.add_row(Group(*panels[:half]), Group(*panels[half:]))
    return Group(head, Text(""), grid)


def render_unreachable(url: str, message: str, hint: str = "") -> RenderableType:
    """What the live view shows while Prometheus does not answer (it keeps trying)."""
    return Group(header(url, hint), Text(""), Text(message, "bold red"))
