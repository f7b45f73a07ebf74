"""``rtml stack up|down|status|env``: the local stack from the command line.

The typer ``app`` here is mounted by the ``rtml`` CLI as ``rtml stack``; it
also runs on its own as ``python -m rtml_localstack.cli``. All logic lives in
:mod:`rtml_localstack.stack`; this module parses options and prints.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rtml_localstack.console import make_console
from rtml_localstack.errors import StackError
from rtml_localstack.launchers import COMPONENTS, S3Launcher
from rtml_localstack.stack import (
    ComponentResult,
    Stack,
    build_launchers,
    select_components,
)
from rtml_localstack.state import default_state_dir

app = typer.Typer(
    help="Run the platform's servers locally without Docker "
    "(Kafka-protocol broker, Redis, MLflow, Cassandra, Prometheus).",
    no_args_is_help=True,
    add_completion=False,
)
console = make_console()
err_console = make_console(stderr=True)

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar="RTML_STATE_DIR",
        help="Where logs, data, pids and stack.json live \\[default: ./.rtml/stack].",
        show_default=False,
    ),
]
Only = Annotated[
    str | None,
    typer.Option("--only", help=f"Comma-separated subset of: {','.join(COMPONENTS)}."),
]
Without = Annotated[
    str | None, typer.Option("--without", help="Comma-separated components to leave out.")
]


def _split(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


def _stack(state_dir: Path | None, timeout: float | None = None) -> Stack:
    return Stack(state_dir or default_state_dir(), timeout_s=timeout, on_result=_print_result)


_STYLE = {
    "started": "green",
    "running": "cyan",
    "skipped": "yellow",
    "failed": "bold red",
    "stopped": "green",
}


def _print_result(result: ComponentResult) -> None:
    style = _STYLE.get(result.outcome, "")
    when = f" in {result.seconds:.2f} s" if result.seconds is not None else ""
    pid = f" pid {result.pid}" if result.pid else ""
    line = f"[{style}]{result.outcome:>8}[/] {result.name:<10} {result.address}{pid}{when}"
    console.print(line, highlight=False)
    if result.detail and result.detail != result.outcome:
        target = err_console if result.outcome == "failed" else console
        for detail_line in result.detail.splitlines():
            target.print(f"         {detail_line}", markup=False, highlight=False)


def _parse_partitions(values: list[str] | None) -> dict[str, int]:
    partitions: dict[str, int] = {}
    for item in values or []:
        topic, sep, count = item.partition("=")
        if not sep or not count.isdigit() or int(count) < 1:
            raise typer.BadParameter(
                f"{item!r}: expected TOPIC=N with N >= 1", param_hint="--partitions"
            )
        partitions[topic.strip()] = int(count)
    return partitions


@app.command()
def up(
    state_dir: StateDir = None,
    only: Only = None,
    without: Without = None,
    kafka_port: Annotated[int, typer.Option(help="Kafka-protocol broker port.")] = 9092,
    redis_port: Annotated[int, typer.Option(help="Redis port.")] = 6379,
    mlflow_port: Annotated[int, typer.Option(help="MLflow server port.")] = 5000,
    cassandra_port: Annotated[int, typer.Option(help="Cassandra CQL port.")] = 9042,
    prometheus_port: Annotated[int, typer.Option(help="Prometheus port.")] = 9090,
    durable: Annotated[
        bool,
        typer.Option(
            "--durable",
            help="Keep Kafka records and offsets on disk (local S3 via npm s3rver).",
        ),
    ] = False,
    s3_port: Annotated[
        int, typer.Option(help="Port of the local S3 in durable mode.")
    ] = S3Launcher.default_port,
    partitions: Annotated[
        list[str] | None,
        typer.Option("--partitions", help="Partition count override, TOPIC=N (repeatable)."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(help="Seconds to wait for each component [default: per component]."),
    ] = None,
) -> None:
    """Start the selected components (already running ones are left alone)."""
    try:
        names = select_components(_split(only), _split(without))
    except StackError as exc:
        err_console.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    ports: dict[str, int | None] = {
        "kafka": kafka_port,
        "redis": redis_port,
        "mlflow": mlflow_port,
        "cassandra": cassandra_port,
        "prometheus": prometheus_port,
    }
    options = {
        "kafka": {
            "durable": durable,
            "s3_port": s3_port,
            "partitions": _parse_partitions(partitions),
        }
    }
    stack = _stack(state_dir, timeout)
    console.print(f"state dir: {stack.state_dir}", highlight=False)
    results = stack.up(build_launchers(names, ports, options=options), explicit=_split(only) or ())
    if not all(r.ok for r in results):
        err_console.print(
            "some components failed (see above); running ones were left running: "
            "`status` shows them, `down` stops them"
        )
        raise typer.Exit(1)
    console.print("ready; `env` prints the variables services need", highlight=False)


@app.command()
def down(
    state_dir: StateDir = None,
    only: Only = None,
    without: Without = None,
    timeout: Annotated[float, typer.Option(help="Seconds between SIGTERM and SIGKILL.")] = 15.0,
) -> None:
    """Stop what `up` started in this state directory (data is kept)."""
    stack = _stack(state_dir)
    names: list[str] | None = None
    if only or without:
        try:
            names = select_components(_split(only), _split(without))
        except StackError as exc:
            err_console.print(str(exc), markup=False)
            raise typer.Exit(2) from None
        if "kafka" in names:
            names.append(S3Launcher.name)  # the durable broker's storage goes with it
    results = stack.down(names, timeout_s=timeout)
    if not results:
        console.print(f"nothing running in {stack.state_dir}", highlight=False)


def _uptime(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@app.command()
def status(state_dir: StateDir = None) -> None:
    """Show each component: pid, address, health, uptime, log file."""
    stack = Stack(state_dir or default_state_dir())
    rows = stack.status()
    if not rows:
        console.print(f"nothing running in {stack.state_dir}", highlight=False)
        return
    table = Table(title=f"rtml stack ({stack.state_dir})")
    for column in ("component", "pid", "address", "healthy", "uptime"):
        table.add_column(column, no_wrap=True)
    table.add_column("log", overflow="fold")
    unhealthy = False
    for row in rows:
        if row.healthy:
            health = "[green]yes[/]"
        else:
            unhealthy = True
            health = f"[red]no[/] {row.detail}" if row.alive else "[red]dead[/]"
        table.add_row(
            row.name,
            str(row.pid),
            row.address,
            health,
            _uptime(row.uptime_s) if row.alive else "-",
            row.log,
        )
    console.print(table)
    if unhealthy:
        raise typer.Exit(1)


@app.command()
def env(state_dir: StateDir = None) -> None:
    """Print `export NAME=value` lines for the running stack (eval "$(... env)")."""
    stack = Stack(state_dir or default_state_dir())
    variables = stack.client_env()
    if not variables:
        err_console.print(f"nothing running in {stack.state_dir}; run `up` first", highlight=False)
        raise typer.Exit(1)
    for name, value in variables.items():
        print(f"export {name}={shlex.quote(value)}")


if __name__ == "__main__":
    app()
