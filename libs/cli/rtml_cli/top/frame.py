"""One frame of ``rtml top``: every panel's query results at one moment.

Gathering (I/O) is kept apart from drawing (:mod:`.view`, pure) so a frame
built from recorded Prometheus answers draws exactly like a live one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from rtml_cli.top.client import QueryFailed, Sample
from rtml_cli.top.queries import PANELS, Panel

#: What a query produced: its samples, or why Prometheus refused it.
Result = list[Sample] | QueryFailed


@dataclass(frozen=True)
class PanelData:
    """A panel's results by query key."""

    panel: Panel
    results: Mapping[str, Result]

    def samples(self, key: str) -> list[Sample]:
        """The query's samples; none when it failed (the failure is in :attr:`errors`)."""
        self.panel.query(key)  # a typo in the view is a KeyError, not an empty panel
        result = self.results.get(key, [])
        return [] if isinstance(result, QueryFailed) else result

    def scalar(self, key: str) -> float | None:
        """The value of a query that yields one series (``sum(...)``), None without data."""
        samples = self.samples(key)
        return samples[0].value if samples else None

    @property
    def errors(self) -> dict[str, str]:
        return {key: str(result) for key, result in self.results.items()
                if isinstance(result, QueryFailed)}

    @property
    def empty(self) -> bool:
        """No query returned a series: the metrics are not exported (yet)."""
        return not any(isinstance(result, list) and result for result in self.results.values())


@dataclass(frozen=True)
class Frame:
    """Every panel's data, from one Prometheus, at one time."""

    url: str
    taken_at: datetime
    window: str
    panels: Sequence[PanelData]


def collect_frame(query: Callable[[str], list[Sample]], url: str, window: str,
                  panels: Sequence[Panel] = PANELS) -> Frame:
    """Run every panel's queries through ``query`` (e.g. PrometheusClient.query).

    A refused query is recorded for its panel; PrometheusUnreachable propagates
    (no frame can be drawn).
    """
    taken_at = datetime.now(UTC)
    data = []
    for panel in panels:
        results: dict[str, Result] = {}
        for item in panel.queries:
            try:
                results[item.key] = query(item.expr(window))
            except QueryFailed as exc:
                results[item.key] = exc
        data.append(PanelData(panel, results))
    return Frame(url, taken_at, window, data)
