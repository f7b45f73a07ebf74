"""Demo step: the whole platform live — every service up, payments decided as they happen.

The earlier steps train and promote the models; this one runs what a user
runs in production, through ``rtml up`` (:mod:`rtml_cli.platform`): the nine
services, supervised. The traffic source (:mod:`rtml_cli.traffic`) then
sends the days after the replayed slice to ``POST /v1/decisions`` at their
own event times (``--event-times data``), so every customer and terminal
arrives with the history the replay gave it and the decisions are those of
production, not of empty windows. Each decided payment goes on to
``transactions`` → features → scorer (champion + shadow) → shadow auditor,
drift and consistency monitors; its label follows a few seconds later, so
the auditor sees labels within the run.

Before the traffic starts, the step waits for the feature pipeline and the
scorer to work off what the replay put on their topics (their counters stop
moving): a decision reads the prefix logs the pipeline writes, and a
pipeline still replaying history would serve it an incomplete past.

The platform keeps running after the demo (``rtml status``, ``rtml top``,
``rtml down``), as the stack does.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Group
from rich.table import Table

from rtml_cli.demo_steps.context import DemoContext, DemoError
from rtml_cli.platform.scrape import MetricSample, scrape, total

#: Wall seconds of live traffic, its rate (requests/s) and event-time speed (an event-hour
#: per second: a day of payments in 24 s, the rate capping what is sent of it).
LIVE_SECONDS = 30.0
LIVE_RATE = 40.0
LIVE_SPEED = 3600.0
#: Wall seconds from a payment to its label in the demo (production: 7 days).
LABEL_DELAY_S = 5.0
#: A counter that has not moved for this long means its service has caught up.
SETTLED_S = 3.0
#: The longest wait for the pipeline and the scorer to work off the replayed backlog.
BACKLOG_TIMEOUT_S = 180.0
#: The longest wait for the shadow auditor's first evaluation with matured labels.
AUDIT_WAIT_S = 20.0


@dataclass(frozen=True)
class Progress:
    """A service counter to watch: where it is served and what it counts."""

    service: str
    metric: str
    what: str


#: What "caught up" is measured by, upstream first.
BACKLOG = (Progress("feature-pipeline", "rtml_events_consumed_total", "events"),
           Progress("scorer", "rtml_events_consumed_total", "vectors and labels"))


def run_live(ctx: DemoContext) -> None:
    """``rtml up``, the backlog worked off, live traffic, then what the platform did."""
    from rtml_cli.platform.control import up

    settings = ctx.settings
    _check_running_platform(ctx)
    result = up(settings.state_dir, data_dir=settings.data_dir, console=ctx.console,
                model_name=settings.model_name, service_env=settings.feature_env())
    status = result.status
    services: dict[str, dict[str, Any]] = status.get("services") or {}
    metrics_ports = {name: int(record["metrics_port"]) for name, record in services.items()
                     if record.get("metrics_port")}
    for progress in BACKLOG:
        seconds = _wait_settled(metrics_ports[progress.service], progress.metric)
        ctx.console.print(f"  {progress.service} caught up with the replayed "
                          f"{progress.what} ({seconds:.0f} s)", highlight=False)
    api_url = str(status.get("api_url") or "http://127.0.0.1:8080")
    summary = _traffic(ctx, api_url)
    for progress in BACKLOG:
        _wait_settled(metrics_ports[progress.service], progress.metric)
    if "shadow-auditor" in metrics_ports:
        _wait_audited(metrics_ports["shadow-auditor"])
    ctx.live = summary
    ctx.add_section("decisions: live payments through the decision API", Group(
        _decisions_table(summary), *_declined(summary.get("example_decline"))))
    ctx.add_section("the platform behind them", _platform_table(metrics_ports, services))
    auditor = services.get("shadow-auditor", {}).get("port")
    prometheus = ctx.client_env.get("RTML_PROMETHEUS_URL")
    ctx.next_commands += [
        ("rtml top", "live view of the running platform from Prometheus (Ctrl-C leaves it)"),
        ("rtml status", "the platform's services: health, restarts, logs"),
        ("".join(f"{name}={value} " for name, value in settings.feature_env().items())
         + f"rtml traffic --event-times data --start-day {_next_day(ctx)} --rate 50"
         + (f" --data {settings.data_dir}" if settings.feature_env() else ""),
         "more live payments (every option: rtml traffic --help)"),
        *([(f"curl -s http://127.0.0.1:{auditor}/v1/audit",
            f"the shadow auditor's figures (HTML report: http://127.0.0.1:{auditor}/report)")]
          if auditor else []),
        *([(f"open {prometheus}", "Prometheus: every service's metrics")] if prometheus else []),
        ("rtml down", "stop the platform's services (the stack keeps running)"),
    ]


def _check_running_platform(ctx: DemoContext) -> None:
    """A platform already running is reused; it must serve the set this run asks for."""
    from rtml_cli.platform.control import supervisor_running
    from rtml_cli.platform.files import PlatformPaths, PlatformSpec

    paths = PlatformPaths(ctx.settings.state_dir.resolve())
    if not paths.spec.exists() or not supervisor_running(paths):
        return
    wanted = ctx.settings.feature_env()
    for service in PlatformSpec.load(paths.spec).services:
        serving = {name: service.env.get(name) for name in FEATURE_VARIABLES}
        if serving != {name: wanted.get(name) for name in FEATURE_VARIABLES}:
            raise DemoError(
                f"the platform running in {ctx.settings.state_dir} serves another feature set "
                f"({service.name}: {_describe(serving)}; this run: {_describe(wanted)}): "
                "`rtml down` stops it, then run the demo again")


#: The variables that choose the served feature set.
FEATURE_VARIABLES = ("RTML_FEATURE_REPO", "RTML_FEATURE_SET")


def _describe(env: dict[str, str | None] | dict[str, str]) -> str:
    chosen = [f"{name}={value}" for name, value in env.items() if value]
    return ", ".join(chosen) or "the handbook's default"


def _first_live_day(ctx: DemoContext) -> int:
    """The day after the replayed slice: the live payments continue its history."""
    return ctx.settings.start_day + ctx.settings.days


def _next_day(ctx: DemoContext) -> int:
    """The first day the live payments did not reach (where more traffic can go on)."""
    return _first_live_day(ctx) + math.ceil(LIVE_SECONDS * LIVE_SPEED / 86_400)


def _traffic(ctx: DemoContext, api_url: str) -> dict[str, Any]:
    """The traffic source for :data:`LIVE_SECONDS`, in this process; its summary."""
    from rtml_cli.traffic.runner import TrafficError, run_traffic
    from rtml_cli.traffic.settings import TrafficSettings
    from rtml_cli.traffic.source import SourceError
    from rtml_common.config import KafkaSettings

    settings = TrafficSettings(
        api_url=api_url, rate=LIVE_RATE, speed=LIVE_SPEED, event_times="data",
        data=ctx.settings.data_dir, start_day=_first_live_day(ctx), duration_s=LIVE_SECONDS,
        label_delay_s=LABEL_DELAY_S, flush_pending_labels=True, progress_s=10.0,
        run_id=f"demo-{ctx.run_id}")
    kafka = KafkaSettings(bootstrap_servers=ctx.require_kafka())
    try:
        return asyncio.run(run_traffic(settings, kafka, asyncio.Event(), lambda line: (
            ctx.console.print(f"  [dim]{line}[/]", highlight=False))))
    except (TrafficError, SourceError) as exc:
        raise DemoError(f"live traffic: {exc}") from None


def _wait_settled(port: int, metric: str, clock: Callable[[], float] = time.monotonic,
                  ) -> float:
    """Seconds until ``metric`` (summed) stopped moving for :data:`SETTLED_S`."""
    started = clock()
    last, since = -1.0, started
    while True:
        try:
            value = total(scrape(port), metric)
        except httpx.HTTPError as exc:
            raise DemoError(f"the metrics endpoint on port {port} stopped answering ({exc}); "
                            "`rtml status` shows which service and its log") from None
        now = clock()
        if value != last:
            last, since = value, now
        elif now - since >= SETTLED_S:
            return now - started
        if now - started > BACKLOG_TIMEOUT_S:
            raise DemoError(f"{metric} still moving after {BACKLOG_TIMEOUT_S:.0f} s: the "
                            "platform is not keeping up (`rtml status`, `rtml top`)")
        time.sleep(0.5)


def _wait_audited(port: int) -> None:
    """Wait (at most :data:`AUDIT_WAIT_S`) for the shadow auditor's first figures: it
    evaluates every 15 s on the platform, on labels that have matured."""
    deadline = time.monotonic() + AUDIT_WAIT_S
    while time.monotonic() < deadline:
        try:
            if total(scrape(port), "rtml_shadow_auditor_matured_labels") > 0:
                return
        except httpx.HTTPError:
            return  # the summary says the metrics were not readable
        time.sleep(1.0)


def _decisions_table(summary: dict[str, Any]) -> Table:
    table = Table(show_header=True, box=None, pad_edge=False)
    for column in ("decisions", "approve", "review", "decline", "degraded", "4xx / 5xx",
                   "p50", "p99"):
        table.add_column(column, justify="right", no_wrap=True)
    outcomes, latency = summary["outcomes"], summary["latency_ms"]
    table.add_row(f"{summary['ok']:,}", *(f"{outcomes[o]:,}" for o in ("approve", "review",
                                                                       "decline")),
                  f"{summary['degraded']:,}",
                  f"{summary['status_4xx']} / {summary['status_5xx']}",
                  _ms(latency["p50"]), _ms(latency["p99"]))
    events = summary["event_time"]
    table.caption = (f"{summary['seconds']:.0f} s at {summary['achieved_rate']:.0f} req/s, "
                     f"payments of {events['first'][:16]} .. {events['last'][:16]} (event "
                     f"time); client round trip; {summary['labels']['produced']:,} labels "
                     "to `labels`")
    return table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _declined(decision: dict[str, Any] | None) -> list[Table]:
    """The highest-scoring decline: why (fired rules, reason codes) and what drove its score."""
    if not decision:
        return []
    table = Table(show_header=False, box=None, pad_edge=False, title_justify="left",
                  title=(f"declined: {decision['transaction_id']}, score "
                         f"{decision.get('score') or 0:.3f} ({decision.get('model_name')} "
                         f"v{decision.get('model_version')})"))
    table.add_column("what", no_wrap=True)
    table.add_column("detail")
    for rule in decision.get("fired_rules", []):
        table.add_row(f"rule {rule['rule']}",
                      f"{rule['reason_code']}{' -> ' + rule['outcome'] if rule['outcome'] else ''}")
    for item in decision.get("contributions", []):
        table.add_row(f"feature {item['feature']}",
                      f"value {item['value']:.4g}, contribution {item['contribution']:+.3f}")
    return [table]


def _platform_table(ports: dict[str, int], services: dict[str, dict[str, Any]]) -> Table:
    """Each service's own counters: what it did with the stream."""
    table = Table(show_header=True, box=None, pad_edge=False)
    table.add_column("service", no_wrap=True)
    table.add_column("did")
    for name, describe in _DESCRIBE.items():
        if name not in ports:
            continue
        try:
            detail = describe(scrape(ports[name]))
        except httpx.HTTPError as exc:
            detail = f"metrics not readable: {exc}"
        restarts = int(services.get(name, {}).get("restarts") or 0)
        table.add_row(name, detail + (f" ({restarts} restarts)" if restarts else ""))
    return table


def _scorer(samples: list[MetricSample]) -> str:
    champion = total(samples, "rtml_scorer_events_scored_total", role="champion")
    shadow = total(samples, "rtml_scorer_events_scored_total", role="shadow")
    return f"{champion:,.0f} vectors scored by the champion, {shadow:,.0f} by shadows"


def _auditor(samples: list[MetricSample]) -> str:
    parts = []
    for sample in samples:
        if sample.name == "rtml_shadow_auditor_roc_auc" and sample.labels.get("role") == "shadow":
            version = sample.labels.get("model_version", "?")
            agreement = next((s.value for s in samples
                              if s.name == "rtml_shadow_auditor_agreement"
                              and s.labels.get("model_version") == version), None)
            parts.append(f"shadow v{version}: AUC {sample.value:.3f}"
                         + (f", agrees with the champion on {agreement:.1%}"
                            if agreement is not None else ""))
    champion = next((s.value for s in samples if s.name == "rtml_shadow_auditor_roc_auc"
                     and s.labels.get("role") == "champion"), None)
    head = f"champion AUC {champion:.3f} on matured labels" if champion is not None else (
        "no matured labels yet")
    return "; ".join([head, *parts])


def _describe_counter(metric: str, text: str, **labels: str) -> Callable[
        [list[MetricSample]], str]:
    return lambda samples: f"{total(samples, metric, **labels):,.0f} {text}"


def _consistency(samples: list[MetricSample]) -> str:
    unchecked = [s.labels.get("feature_set", "?") for s in samples
                 if s.name == "rtml_consistency_feature_set_checked" and s.value == 0]
    if unchecked:
        return (f"feature set {', '.join(unchecked)} not checked: the monitor re-computes the "
                "handbook's sets only (its log says why)")
    checked = total(samples, "rtml_consistency_decisions_total", outcome="checked")
    pending = total(samples, "rtml_consistency_decisions_pending")
    values = total(samples, "rtml_consistency_checked_total", lag="current")
    mismatches = total(samples, "rtml_consistency_mismatches_total", lag="current")
    return (f"{checked:,.0f} sampled decisions re-computed with the batch engine "
            f"({pending:,.0f} waiting for their window's data): {mismatches:,.0f} mismatches "
            f"in {values:,.0f} feature values of decisions that saw their entities' "
            "previous events")


_DESCRIBE: dict[str, Callable[[list[MetricSample]], str]] = {
    "feature-pipeline": _describe_counter("rtml_feature_vectors_total",
                                          "feature vectors computed and published"),
    "scorer": _scorer,
    "decision-log-writer": _describe_counter("rtml_decision_log_written_total",
                                             "decisions written to the Cassandra decision log"),
    "shadow-auditor": _auditor,
    "consistency-monitor": _consistency,
}
