"""The audit report opened in headless Chromium: every chart really renders.

Parsing the HTML proves what was written; this proves what a reader sees:
each chart's figure is laid out with a real size, its SVG curves have drawn
geometry (``getTotalLength`` > 0), the page makes no request beyond itself
(self-contained), and the pixels of each chart are not blank and contain
the colours of the curves.

Uses Debian's ``chromium`` (installed by ``scripts/install-system-deps.sh``)
driven by Playwright, which never downloads a browser of its own here.
"""

from __future__ import annotations

import io
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image

from rtml_shadow_auditor.report import ReportData, Verdict, VersionReport, write_report
from rtml_shadow_auditor.report.charts import PALETTE

if TYPE_CHECKING:
    from playwright.sync_api import Page, Request

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "chromium is not installed: run scripts/install-system-deps.sh as root "
        "(installs Debian's chromium) to run the report's browser test",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="playwright is not installed: pip install -r requirements/dev.txt",
)

#: Flags that keep Chromium quiet in a container without network (its
#: background connections would otherwise be refused and logged).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def _report() -> ReportData:
    rng = np.random.default_rng(11)
    n = 2000
    y = (rng.random(n) < 0.1).astype(float)
    labels = [int(v) if rng.random() < 0.8 else None for v in y]
    at = [T0 + timedelta(seconds=20 * i) for i in range(500)]

    def version(v: str, alias: str, sep: float, verdict: Verdict | None) -> VersionReport:
        scores = np.clip(rng.normal(0.15 + sep * y, 0.12), 0, 1)
        latency = rng.gamma(2.0, 4.0, len(at))
        metrics = {"latency_p99_ms": float(np.percentile(latency, 99)), "errors": 0}
        return VersionReport(v, alias, scores, labels, latency, at, metrics, verdict)

    return ReportData(
        "fraud-detector",
        T0,
        "last 3 h",
        version("4", "champion", 0.4, None),
        (
            version("5", "challenger", 0.55, Verdict("graduate", ("AP +0.05",))),
            version("6", "shadow-2", 0.3, Verdict("hold", ("AP -0.03",))),
        ),
        latency_sla_ms=20.0,
    )


def _empty_report() -> ReportData:
    champion = VersionReport("1", "champion", np.linspace(0, 1, 20), [None] * 20)
    return ReportData("fraud-detector", T0, "just started", champion)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Both reports written with write_report and served over http on 127.0.0.1."""
    root = tmp_path_factory.mktemp("reports")
    write_report(_report(), root, filename="full.html")
    write_report(_empty_report(), root, filename="empty.html")
    handler = partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def _open(page: Page, url: str) -> list[str]:
    """Load ``url``; returns every other URL the page requested."""
    requested: list[str] = []

    def record(request: Request) -> None:
        requested.append(request.url)

    page.on("request", record)
    page.goto(url, wait_until="load")
    page.remove_listener("request", record)
    return [u for u in requested if u != url and not u.endswith("/favicon.ico")]


def _near(pixels: np.ndarray, hex_colour: str, tolerance: int = 30) -> int:
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels[..., :3].astype(int) - rgb).max(axis=-1) <= tolerance).sum())


def test_every_chart_renders_in_chromium(browser_page: Page, served: str) -> None:
    page = browser_page
    assert _open(page, f"{served}/full.html") == []  # self-contained: nothing fetched
    figures = page.locator("figure.chart")
    ids = [figures.nth(i).get_attribute("id") for i in range(figures.count())]
    assert ids == ["scores-1", "scores-2", "roc", "pr", "latency"]

    for chart_id in ids:
        figure = page.locator(f"figure#{chart_id}")
        figure.scroll_into_view_if_needed()
        assert figure.is_visible()
        box = figure.bounding_box()
        assert box is not None and box["width"] > 250 and box["height"] > 200, (chart_id, box)
        svg_box = figure.locator("svg").first.bounding_box()
        assert svg_box is not None and svg_box["width"] > 200 and svg_box["height"] > 150

        # Each curve's path exists and has real drawn length in the browser.
        curves = figure.locator("g[id*='curve-'] path")
        assert curves.count() >= 2, chart_id
        lengths = curves.evaluate_all("ps => ps.map(p => p.getTotalLength())")
        assert all(length > 50 for length in lengths), (chart_id, lengths)

        # Pixels: not blank, and the curves' colours are on screen.
        pixels = np.asarray(Image.open(io.BytesIO(figure.screenshot())).convert("RGB"))
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, chart_id
        version_indexes = [0, int(chart_id[-1])] if chart_id.startswith("scores-") else [0, 1, 2]
        for index in version_indexes:
            assert _near(pixels, PALETTE[index]) > 30, (chart_id, index)

    roc_champion = page.locator("#roc-curve-0 path")
    assert roc_champion.count() == 1 and roc_champion.is_visible()
    sla = page.locator("#latency-sla-line path")
    assert sla.count() == 1
    assert sla.evaluate("p => p.getBBox().width") > 200  # spans the time axis

    whole = np.asarray(Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("L"))
    assert whole.std() > 10  # a page with content, not a blank one


def test_empty_report_shows_messages_in_chromium(browser_page: Page, served: str) -> None:
    page = browser_page
    assert _open(page, f"{served}/empty.html") == []
    roc = page.locator("figure#roc")
    assert roc.is_visible()
    assert roc.locator("p.no-data").inner_text() == "no matured labels yet"
    assert roc.locator("svg").count() == 0
    latency = page.locator("figure#latency p.no-data")
    assert latency.is_visible() and "no latency samples" in latency.inner_text()
    scores = page.locator("figure#scores-0 g[id*='curve-'] path")
    assert scores.count() == 1
    assert scores.evaluate("p => p.getTotalLength()") > 50
