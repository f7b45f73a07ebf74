"""``rtml top``: the platform's live state, from Prometheus, refreshed until Ctrl-C.

Where Prometheus is: ``--prometheus-url`` (or ``$RTML_PROMETHEUS_URL``, which
``rtml stack env`` exports), else the ``prometheus`` component recorded in the
state directory's ``stack.json`` (``--state-dir`` / ``$RTML_STATE_DIR``, like
``rtml stack``). ``--once`` prints one frame as plain text, tables at their
full width, and exits: for scripts, CI and piping. Without ``--once`` and
without a terminal, frames are printed one after another (like ``top -b``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.live import Live

from rtml_cli.top.client import DEFAULT_TIMEOUT_S, PrometheusClient, PrometheusUnreachable
from rtml_cli.top.frame import collect_frame
from rtml_cli.top.queries import check_window
from rtml_cli.top.view import render_frame, render_unreachable
from rtml_localstack.cli import StateDir
from rtml_localstack.state import StackState, default_state_dir

#: Columns of the plain-text output: wide enough that no table is ever cut or wrapped.
PLAIN_WIDTH = 400


class TopError(Exception):
    """Bad input or no Prometheus to read: the message says what to do."""


def check_url(url: str) -> str:
    """``url`` without a trailing slash, if it is an http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TopError(f"--prometheus-url {url!r}: expected http://host:port")
    return url.rstrip("/")


def prometheus_url(url: str | None, state_dir: Path) -> str:
    """The given URL, else the Prometheus that ``rtml up`` / ``rtml stack up`` recorded."""
    if url:
        return check_url(url)
    try:
        state = StackState.load(state_dir)
    except ValueError as exc:
        raise TopError(str(exc)) from None
    record = state.components.get("prometheus")
    if record is None:
        raise TopError(
            f"no Prometheus recorded in {state.path}: start the platform (`rtml up`) or "
            "the stack (`rtml stack up`), point --state-dir at its state directory, or "
            "pass --prometheus-url")
    return f"http://{record.host}:{record.port}"


def plain_console() -> Console:
    """stdout without colours or control codes, wide enough for every table."""
    return Console(file=sys.stdout, color_system=None, force_terminal=False,
                   force_interactive=False, width=PLAIN_WIDTH, highlight=False)


def print_once(client: PrometheusClient, window: str, console: Console) -> None:
    """One frame as plain text (PrometheusUnreachable propagates)."""
    console.print(render_frame(collect_frame(client.query, client.url, window)))


def run_batch(client: PrometheusClient, window: str, interval: float,
              console: Console) -> None:
    """Frames one after another on a non-terminal stdout, until interrupted."""
    while True:
        try:
            print_once(client, window, console)
        except PrometheusUnreachable as exc:
            console.print(f"{exc}; retrying")
        time.sleep(interval)


#: Terminal width from which the live view puts its panels in two columns.
TWO_COLUMNS_FROM = 230
#: Rows of the per-feature tables (drift, consistency) in the live view, worst first.
LIVE_MAX_ROWS = 8


def run_live(client: PrometheusClient, window: str, interval: float,
             console: Console) -> None:
    """Redraw in place every ``interval`` seconds; Prometheus outages show and are retried."""
    hint = f"every {interval:g} s, Ctrl-C to quit"
    with Live(console=console, screen=True, auto_refresh=False,
              vertical_overflow="crop") as live:
        while True:
            columns = 2 if console.size.width >= TWO_COLUMNS_FROM else 1
            try:
                frame = collect_frame(client.query, client.url, window)
                live.update(render_frame(frame, hint, columns, LIVE_MAX_ROWS), refresh=True)
            except PrometheusUnreachable as exc:
                live.update(render_unreachable(client.url, f"{exc}; retrying", hint),
                            refresh=True)
            time.sleep(interval)


def top_command(
    once: Annotated[bool, typer.Option(
        "--once", help="Print one frame as plain text and exit.")] = False,
    interval: Annotated[float, typer.Option(
        min=0.2, help="Seconds between refreshes.")] = 2.0,
    prometheus_url_option: Annotated[str | None, typer.Option(
        "--prometheus-url", envvar="RTML_PROMETHEUS_URL", show_default=False,
        help="Prometheus to read, e.g. http://127.0.0.1:9090 \\[default: the one in the "
             "state dir's stack.json].")] = None,
    state_dir: StateDir = None,
    window: Annotated[str, typer.Option(
        help="Rate window of the per-second figures (a Prometheus duration; at least "
             "two scrape intervals).")] = "30s",
    timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds to wait for each answer of Prometheus.")] = DEFAULT_TIMEOUT_S,
) -> None:
    """Live view of the running platform: services, decisions, models, features, drift."""
    err = Console(stderr=True, highlight=False)
    try:
        check_window(window)
        url = prometheus_url(prometheus_url_option, (state_dir or default_state_dir()).resolve())
    except (TopError, ValueError) as exc:
        err.print(f"[bold red]rtml top:[/] {exc}")
        raise typer.Exit(2) from None
    with PrometheusClient(url, timeout_s=timeout) as client:
        try:
            if once:
                print_once(client, window, plain_console())
            elif sys.stdout.isatty():
                run_live(client, window, interval, Console())
            else:
                run_batch(client, window, interval, plain_console())
        except PrometheusUnreachable as exc:
            err.print(f"[bold red]rtml top:[/] {exc}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            pass
