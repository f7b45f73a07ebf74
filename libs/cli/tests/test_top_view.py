"""``rtml top`` frames drawn from Prometheus answers recorded as Prometheus returns them.

The answers (``top_fixtures/*.json``) are served to the real client through
httpx's MockTransport, keyed by each panel query's PromQL, so parsing,
gathering and drawing run exactly as against a live Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rtml_cli.top.client import PrometheusClient
from rtml_cli.top.command import plain_console
from rtml_cli.top.frame import collect_frame
from rtml_cli.top.queries import PANELS, PLATFORM_SERVICES
from rtml_cli.top.view import NO_DATA, render_frame

FIXTURES = Path(__file__).parent / "top_fixtures"
WINDOW = "30s"
URL = "http://prometheus.test:9090"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


#: PromQL as sent -> "panel.query" key of the fixtures.
KEYS = {query.expr(WINDOW): f"{panel.key}.{query.key}" for panel in PANELS
        for query in panel.queries}


def answering(answer: Callable[[str], tuple[int, Any]]) -> httpx.MockTransport:
    """A Prometheus whose /api/v1/query answers ``answer(panel.query key)``."""
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/query"
        status, body = answer(KEYS[request.url.params["query"]])
        return httpx.Response(status, json=body)
    return httpx.MockTransport(handle)


def draw(transport: httpx.MockTransport, columns: int = 1, max_rows: int | None = None) -> str:
    console = plain_console()
    with PrometheusClient(URL, transport=transport) as client, console.capture() as captured:
        frame = collect_frame(client.query, client.url, WINDOW)
        console.print(render_frame(frame, columns=columns, max_rows=max_rows))
    return captured.get()


def row(text: str, first_cell: str) -> list[str]:
    """The cells of the table row starting with ``first_cell`` (cells are 2+ spaces apart)."""
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


def section(text: str, title: str) -> str:
    """The lines of one panel: from its title to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title + "  ("))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return "\n".join(lines[start:end])


@pytest.fixture(scope="module")
def busy() -> str:
    recorded = fixture("busy")
    assert set(recorded) == set(KEYS.values()), "the fixture answers every panel query"
    return draw(answering(lambda key: (200, recorded[key])))


def test_every_query_is_distinct() -> None:
    """Answers are looked up by PromQL: two panels sharing one would mix their fixtures."""
    assert len(KEYS) == sum(len(panel.queries) for panel in PANELS)


def test_services_panel(busy: str) -> None:
    text = section(busy, "Services")
    assert row(text, "feature-pipeline") == ["feature-pipeline", "up", "ok", "0", "1,234.5/s",
                                             "-", "42.0 ms", "120"]
    assert row(text, "scorer") == ["scorer", "up", "ok", "0", "1,200.2/s", "-", "1.50 s", "0"]
    assert row(text, "decision-api")[1:6] == ["up", "ok", "0", "-", "48.5/s"]
    assert row(text, "drift-monitor")[1:4] == ["DOWN", "failing", "3"]
    # Every platform service has a row, data or not, in the platform's order.
    order = [line.split()[0] for line in text.splitlines()[2:]]
    assert order == list(PLATFORM_SERVICES)
    assert row(text, "retrain-worker")[1:] == ["-"] * 7


def test_decisions_panel(busy: str) -> None:
    text = section(busy, "Decision API")
    assert row(text, "48.5/s") == ["48.5/s", "12,000", "4.2 ms", "18.5 ms", "12"]
    assert row(text, "approve")[:4] == ["approve", "11,000", "91.7%", "44.0/s"]
    assert row(text, "review")[:4] == ["review", "700", "5.83%", "3.00/s"]
    assert row(text, "decline")[:4] == ["decline", "300", "2.5%", "1.50/s"]
    # Top reasons, most frequent first, beside the mix; degraded answers by reason.
    assert text.index("HIGH_SCORE (high_score)") < text.index("VELOCITY (velocity_1h)")
    assert "950" in row(text, "approve") and "redis_unavailable" in row(text, "approve")


def test_models_panel(busy: str) -> None:
    text = section(busy, "Models")
    assert row(text, "champion") == ["champion", "v3", "champion", "1,200.2/s", "-", "0.912",
                                     "0.610", "5,400"]
    lines = [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()
             if line.startswith("shadow")]
    assert lines == [
        ["shadow", "v4", "challenger", "1,200.2/s", "0.987", "0.925", "0.640", "5,400"],
        # Audited but no label matured yet: AUC and AP are not known, not zero.
        ["shadow", "v5", "-", "-", "0.950", "awaiting labels", "awaiting labels", "0"],
    ]


def test_freshness_panel(busy: str) -> None:
    text = section(busy, "Feature freshness")
    assert row(text, "12.0 ms") == ["12.0 ms", "83.0 ms", "250,000", "1,234.5/s", "7"]


def test_drift_panel(busy: str) -> None:
    text = section(busy, "Drift (PSI per feature)")
    assert "reference: champion v3" in text
    assert row(text, "subject") == ["subject", "PSI tumbling", "PSI sliding", "alert"]
    assert row(text, "amount") == ["amount", "0.3100", "0.2700", "ALERT"]
    assert row(text, "tx_count_1h") == ["tx_count_1h", "0.1100", "n/a"]
    assert row(text, "score") == ["score", "0.0200", "0.0180"]
    # Highest PSI first.
    assert text.index("amount") < text.index("tx_count_1h") < text.index("score  ")


def test_consistency_panel(busy: str) -> None:
    text = section(busy, "Online/offline consistency")
    assert "decisions waiting for their data: 42" in text
    assert row(text, "amount_sum_24h") == ["amount_sum_24h", "1,000", "2", "0.2%", "0.4%",
                                           "0.5"]
    assert row(text, "tx_count_1h") == ["tx_count_1h", "1,000", "0", "0%", "0%", "0"]


def test_plain_output_is_not_cut_at_80_columns(busy: str) -> None:
    assert max(len(line) for line in busy.splitlines()) > 80
    assert "\x1b[" not in busy, "plain text: no terminal control codes"
    assert busy.startswith(f"rtml top  Prometheus {URL}  ")


def test_no_metrics_yet_reads_no_data_on_every_panel() -> None:
    text = draw(answering(lambda key: (200, fixture("empty_vector"))))
    for panel in PANELS:
        assert section(text, panel.title).splitlines()[1].startswith(NO_DATA)
    assert text.count(NO_DATA) == len(PANELS)


def test_idle_platform_reads_zero_and_idle_not_no_data() -> None:
    """Decisions made earlier, none in the window, no fallback answer ever: 0 and idle."""
    recorded = fixture("busy")
    nan = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {}, "value": [1796659200.123, "NaN"]}]}}
    zero = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {}, "value": [1796659200.123, "0"]}]}}
    answers = {**recorded, "decisions.rate": zero, "decisions.p50": nan, "decisions.p99": nan,
               "decisions.degraded": fixture("empty_vector")}
    text = section(draw(answering(lambda key: (200, answers[key]))), "Decision API")
    assert row(text, "0.00/s") == ["0.00/s", "12,000", "idle", "idle", "0"]


def test_a_refused_query_is_shown_in_its_panel_and_the_rest_is_drawn() -> None:
    recorded = fixture("busy")
    text = draw(answering(lambda key: (400, fixture("bad_data")) if key == "decisions.p99"
                          else (200, recorded[key])))
    decisions = section(text, "Decision API")
    assert "query 'p99' failed: bad_data: invalid parameter" in decisions
    assert row(decisions, "48.5/s") == ["48.5/s", "12,000", "4.2 ms", "-", "12"]
    assert row(section(text, "Models"), "champion")[1] == "v3"


def test_live_layout_two_columns_and_worst_rows_only() -> None:
    recorded = fixture("busy")
    text = draw(answering(lambda key: (200, recorded[key])), columns=2, max_rows=1)
    # Services beside Feature freshness (first panel of the second column).
    assert any("Services  (" in line and "Feature freshness  (" in line
               for line in text.splitlines())
    assert "amount" in text and "tx_count_1h" not in text
    assert "... 2 more subjects (rtml top --once lists all)" in text
    # Consistency: the feature with most mismatches is kept.
    assert "amount_sum_24h" in text and "... 1 more features" in text
