"""``rtml up`` / ``rtml down`` / ``rtml status``: options and printing only.

The logic is in :mod:`rtml_cli.platform.control`. Mounted by the ``rtml``
app as top-level commands (``app.command("up")(up_command)`` ...); ``app``
here also runs them alone: ``python -m rtml_cli.platform.command up``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rtml_cli.platform.catalog import TrafficOptions
from rtml_cli.platform.control import (
    DEFAULT_API_PORT,
    DEFAULT_DOWN_TIMEOUT_S,
    DEFAULT_UP_TIMEOUT_S,
    down,
    service_rows,
    up,
)
from rtml_cli.platform.files import PlatformError, PlatformPaths
from rtml_localstack.console import make_console
from rtml_localstack.state import default_state_dir

console = make_console()
err_console = Console(stderr=True)

StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", envvar="RTML_STATE_DIR", show_default=False,
    help="Stack state directory, as for `rtml stack` \\[default: ./.rtml/stack].")]


def up_command(
    state_dir: StateDir = None,
    api_port: Annotated[int, typer.Option(min=1, max=65535,
                                          help="Port of the decision API.")] = DEFAULT_API_PORT,
    data: Annotated[Path | None, typer.Option(
        help="Data set a first champion is trained on (simulated there if missing) "
             "\\[default: the demo's, data/simulator].", show_default=False)] = None,
    traffic_rate: Annotated[float | None, typer.Option(
        show_default=False,
        help="Also run the traffic source at this many transactions per second.")] = None,
    traffic_speed: Annotated[float, typer.Option(
        help="Event time of the traffic source runs this many times faster than wall "
             "time.")] = 3600.0,
    traffic_event_times: Annotated[str, typer.Option(
        help="now: the traffic's event times end at now; data: the data set's own times "
             "from --traffic-start-day, continuing a replayed history (after `make demo`: "
             "data, day 16).")] = "now",
    traffic_start_day: Annotated[int, typer.Option(
        help="First day of the data set the traffic sends.")] = 0,
    timeout: Annotated[float, typer.Option(
        min=1.0, help="Seconds to wait for every service to be healthy.")] = DEFAULT_UP_TIMEOUT_S,
) -> None:
    """Start the whole platform: stack, champion, and every service, supervised."""
    from rtml_simulator.cli import DEFAULT_DATA_DIR

    data_dir = data or DEFAULT_DATA_DIR
    try:
        traffic = (TrafficOptions(traffic_rate, traffic_speed, data_dir.resolve(),
                                  traffic_event_times, traffic_start_day)
                   if traffic_rate is not None else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--traffic-*") from None
    try:
        result = up(state_dir or default_state_dir(), api_port=api_port, data_dir=data_dir,
                    traffic=traffic, timeout_s=timeout, console=console)
    except PlatformError as exc:
        err_console.print(f"[bold red]rtml up failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("interrupted: what started keeps running (`rtml status` shows it, "
                          "`rtml down` stops it)", highlight=False)
        raise typer.Exit(130) from None
    if not result.already_running:
        console.print(f"[green]platform up[/] in {result.seconds:.0f} s: decision API "
                      f"{result.status.get('api_url')}; `rtml status` shows the services, "
                      "`rtml down` stops them", highlight=False)


def down_command(
    state_dir: StateDir = None,
    timeout: Annotated[float, typer.Option(
        min=1.0, help="Seconds the supervisor gets to stop the services before SIGKILL.")] = (
        DEFAULT_DOWN_TIMEOUT_S),
) -> None:
    """Stop the platform's services (and the stack, if `rtml up` started it)."""
    try:
        notes = down(state_dir or default_state_dir(), timeout_s=timeout, console=console)
    except PlatformError as exc:
        err_console.print(f"[bold red]rtml down failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    for note in notes:
        console.print(note, highlight=False)


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


_STYLE = {"healthy": "green", "starting": "yellow", "backoff": "yellow"}


def status_command(state_dir: StateDir = None) -> None:
    """Show each service: state, pid, ports, restarts, uptime, log; exit 1 if any is down."""
    paths = PlatformPaths((state_dir or default_state_dir()).resolve())
    try:
        status, alive, rows = service_rows(paths)
    except PlatformError as exc:
        err_console.print(str(exc), highlight=False)
        raise typer.Exit(1) from None
    if status is None:
        console.print(f"the platform is not running in {paths.state_dir} (`rtml up` starts it)",
                      highlight=False)
        raise typer.Exit(1)
    supervisor = status["supervisor"]
    table = Table(title=f"rtml platform ({paths.state_dir})")
    for column in ("service", "state", "pid", "port", "metrics", "restarts", "uptime"):
        table.add_column(column, no_wrap=True)
    table.add_column("log", overflow="fold")
    for row in rows:
        style = _STYLE.get(row.state, "red")
        state = f"[{style}]{row.state}[/]" + (f" {row.detail}" if row.detail else "")
        table.add_row(row.name, state, str(row.pid or "-"), str(row.port or "-"),
                      str(row.metrics_port or "-"), str(row.restarts), _uptime(row.uptime_s),
                      row.log)
    console.print(table)
    how = "running" if alive else "[red]not running[/]"
    console.print(f"supervisor pid {supervisor['pid']} {how}; metrics "
                  f"http://127.0.0.1:{supervisor['metrics_port']}/metrics; decision API "
                  f"{status.get('api_url')}; log {supervisor['log']}", highlight=False)
    if not alive or not all(row.ok for row in rows):
        raise typer.Exit(1)


app = typer.Typer(help="The whole platform, run locally and supervised.",
                  no_args_is_help=True, add_completion=False)
app.command("up")(up_command)
app.command("down")(down_command)
app.command("status")(status_command)

if __name__ == "__main__":
    app()
