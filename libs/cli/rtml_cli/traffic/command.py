"""``rtml traffic`` / ``python -m rtml_cli.traffic``: the live traffic source's command line.

Options override ``RTML_TRAFFIC_*`` variables (:class:`.settings.TrafficSettings`),
which override the defaults; Kafka's address is ``--bootstrap-servers`` or
``RTML_KAFKA_BOOTSTRAP_SERVERS``. Progress lines go to stderr, the summary to
stdout (``--json``: one JSON object, printed last). Ctrl-C or SIGTERM stops
cleanly (a second one of either stops at once). Exit codes: 0 done, 1 the
API, the broker or label delivery failed, 2 invalid options or data set.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError

from rtml_cli.traffic.runner import TrafficError, run_traffic
from rtml_cli.traffic.settings import ENV_PREFIX, TrafficSettings
from rtml_cli.traffic.source import SourceError
from rtml_common.config import KafkaSettings
from rtml_common.service_config import unknown_variables

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

#: Options whose name is not the setting's (``--duration`` sets ``duration_s``).
_OPTION_NAMES = {"duration_s": "--duration"}


def _option(field: str) -> str:
    return _OPTION_NAMES.get(field, "--" + field.replace("_", "-"))


def load_traffic_settings(overrides: dict[str, Any]) -> TrafficSettings:
    """Settings from the options given (not None) over the environment; exits 2 if invalid."""
    unknown = unknown_variables(os.environ, ENV_PREFIX, TrafficSettings)
    if unknown:
        _fail(f"unknown variable(s) {', '.join(unknown)}", EXIT_BAD_INPUT)
    try:
        return TrafficSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{_option(str(error['loc'][0]))} / {ENV_PREFIX}{str(error['loc'][0]).upper()}: "
            f"{error['msg']}" if error["loc"] else error["msg"] for error in exc.errors())
        _fail(f"invalid option: {problems}", EXIT_BAD_INPUT)


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"rtml traffic: {message}", err=True)
    raise typer.Exit(code)


def _log(line: str) -> None:
    typer.echo(line, err=True)


def format_summary(summary: dict[str, Any]) -> str:
    """The human-readable summary printed at the end (``--json`` prints the dict)."""
    outcomes = ", ".join(f"{name} {n}" for name, n in summary["outcomes"].items())
    latency = summary["latency_ms"]
    labels = summary["labels"]
    errors = ", ".join(f"{kind} {n}" for kind, n in summary["errors"].items()) or "none"
    return "\n".join([
        f"traffic {summary['run_id']} stopped ({summary['stopped_by']}) after "
        f"{summary['seconds']:.1f} s",
        f"  sent      {summary['sent']} ({summary['achieved_rate']:.1f}/s of "
        f"{summary['rate']:g} asked; {summary['idle_slots']} idle slots, "
        f"{summary['skipped_transactions']} payments skipped)",
        f"  behind    {summary['behind_schedule']} sends (max lag {summary['max_lag_ms']:.0f} ms; "
        f"{summary['unsent_at_stop']} slot(s) still waiting for room at the stop, not sent)",
        f"  decided   {summary['ok']} ({outcomes}; {summary['degraded']} degraded)",
        f"  refused   4xx {summary['status_4xx']}, 5xx {summary['status_5xx']}; errors {errors}",
        f"  latency   p50 {latency['p50']} ms, p99 {latency['p99']} ms, max {latency['max']} ms",
        f"  labels    {labels['produced']} produced to {labels['topic']!r}, "
        f"{labels['pending']} pending, {labels['flushed_pending']} flushed early, "
        f"{labels['failed']} failed",
        f"  event     {summary['event_time']['first']} .. {summary['event_time']['last']}",
    ])


async def _main(settings: TrafficSettings, kafka: KafkaSettings) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set():  # a second signal: stop now, with the default handler
            loop.remove_signal_handler(signum)
            signal.raise_signal(signum)
            return
        _log(f"{signum.name}: stopping (in-flight requests answer, due labels are produced)")
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await run_traffic(settings, kafka, stop, _log)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def traffic_command(
    api_url: Annotated[str | None, typer.Option(
        help="Decision API base URL [default: $RTML_TRAFFIC_API_URL or "
             "http://127.0.0.1:8080]", show_default=False)] = None,
    bootstrap_servers: Annotated[str | None, typer.Option(
        help="Kafka bootstrap servers [default: $RTML_KAFKA_BOOTSTRAP_SERVERS or "
             "127.0.0.1:9092]", show_default=False)] = None,
    rate: Annotated[float | None, typer.Option(
        help="Requests per second, open loop [default: 50]", show_default=False)] = None,
    speed: Annotated[float | None, typer.Option(
        help="Event time runs this many times faster than wall time (1 = real time) "
             "[default: 3600]", show_default=False)] = None,
    event_times: Annotated[str | None, typer.Option(
        help="now: mapped onto the wall clock, ending at now; data: the data set's own "
             "times, continuing a replayed history [default: now]", show_default=False)] = None,
    data: Annotated[Path | None, typer.Option(
        help="Simulator data set directory [default: data/simulator]",
        show_default=False)] = None,
    start_day: Annotated[int | None, typer.Option(
        help="First day of the data set to send [default: 0]", show_default=False)] = None,
    duration: Annotated[float | None, typer.Option(
        help="Stop after this many seconds [default: at the end of the data, or Ctrl-C]",
        show_default=False)] = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print the summary as one JSON object (last on stdout).")] = False,
    label_delay_s: Annotated[float | None, typer.Option(
        help="Wall seconds from a payment to its label [default: 7 event-days / speed]",
        show_default=False)] = None,
    flush_pending_labels: Annotated[bool | None, typer.Option(
        help="At the stop, produce labels not yet due instead of counting them pending.",
        show_default=False)] = None,
    labels_topic: Annotated[str | None, typer.Option(
        help="Topic of the labels [default: labels]", show_default=False)] = None,
    max_in_flight: Annotated[int | None, typer.Option(
        help="Most requests awaiting an answer [default: 256]", show_default=False)] = None,
    request_timeout_s: Annotated[float | None, typer.Option(
        help="Time limit of one request [default: 10]", show_default=False)] = None,
    connect_wait_s: Annotated[float | None, typer.Option(
        help="Wait this long for the API and the broker at start [default: 30]",
        show_default=False)] = None,
    progress_s: Annotated[float | None, typer.Option(
        help="Seconds between progress lines [default: 5]", show_default=False)] = None,
    max_event_age_s: Annotated[float | None, typer.Option(
        help="The API's RTML_DECISION_MAX_EVENT_AGE_S, if set: refuse runs whose event "
             "clock would start older", show_default=False)] = None,
    run_id: Annotated[str | None, typer.Option(
        help="Transaction id prefix [default: traffic-<UTC time>-<random>]",
        show_default=False)] = None,
) -> None:
    """Send simulated payments to the decision API, and their labels to Kafka later."""
    settings = load_traffic_settings({
        "api_url": api_url, "rate": rate, "speed": speed, "event_times": event_times,
        "data": data,
        "start_day": start_day, "duration_s": duration, "label_delay_s": label_delay_s,
        "flush_pending_labels": flush_pending_labels, "labels_topic": labels_topic,
        "max_in_flight": max_in_flight, "request_timeout_s": request_timeout_s,
        "connect_wait_s": connect_wait_s, "progress_s": progress_s,
        "max_event_age_s": max_event_age_s, "run_id": run_id})
    kafka = (KafkaSettings(bootstrap_servers=bootstrap_servers) if bootstrap_servers
             else KafkaSettings())
    try:
        summary = asyncio.run(_main(settings, kafka))
    except SourceError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    except TrafficError as exc:
        _fail(str(exc), EXIT_FAILED)
    if json_output:
        typer.echo(format_summary(summary), err=True)
        typer.echo(json.dumps(summary, sort_keys=True))
    else:
        typer.echo(format_summary(summary))
    if summary["labels"]["failed"]:
        raise typer.Exit(EXIT_FAILED)


#: Standalone app (``python -m rtml_cli.traffic``); ``rtml traffic`` mounts the function.
app = typer.Typer(add_completion=False)
app.command()(traffic_command)
