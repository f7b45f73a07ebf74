"""``rtml loop``: the closed retraining loop on the local stack, with its timeline.

Starts (or reuses) the local stack's broker, Redis and MLflow, runs
:func:`rtml_cli.loop.run.run_loop` in a fresh work directory (new topics
would be better, but the stack is shared: consumer groups and the model name
are the loop's own, and the work directory holds every service log), then
prints each milestone with its wall-clock time and event time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rtml_cli.demo_steps.stack import print_result
from rtml_cli.loop.run import LoopEnvironment, LoopFailed, LoopResult, run_loop
from rtml_cli.loop.scenario import LoopScenario
from rtml_localstack.errors import StackError
from rtml_localstack.services import ServiceFailed
from rtml_localstack.stack import Stack, build_launchers
from rtml_localstack.state import default_state_dir

COMPONENTS = ["kafka", "redis", "mlflow"]


def timeline_table(result: LoopResult) -> Table:
    """The milestones in order: wall clock (seconds after the first) and what happened."""
    table = Table(show_header=True, box=None, pad_edge=False)
    for column in ("step", "wall clock", "+s", "what"):
        table.add_column(column, no_wrap=column != "what")
    first = result.milestones[0].entry.happened_at if result.milestones else None
    for milestone in result.milestones:
        offset = (milestone.entry.happened_at - first).total_seconds() if first else 0.0
        table.add_row(milestone.name, f"{milestone.entry.happened_at:%H:%M:%S.%f}"[:-3],
                      f"{offset:.1f}", milestone.entry.describe())
    return table


def loop_command(
    work_dir: Annotated[Path | None, typer.Option(
        help="Where the data, archive, reports and service logs go (default: a new "
             "directory under the stack state dir).", show_default=False)] = None,
    state_dir: Annotated[Path | None, typer.Option(
        envvar="RTML_STATE_DIR", show_default=False,
        help="Stack state directory, default ./.rtml/stack.")] = None,
) -> None:
    """Run the closed loop: drift alert -> retrain -> shadow -> graduation."""
    console = Console()
    stack = Stack((state_dir or default_state_dir()).resolve(),
                  on_result=lambda r: print_result(console, r))
    console.print("[bold]local stack[/]")
    try:
        results = stack.up(build_launchers(COMPONENTS, {}))
    except StackError as exc:
        console.print(f"[bold red]stack:[/] {exc}")
        raise typer.Exit(1) from None
    if not all(r.ok for r in results):
        console.print(f"[bold red]the stack did not start[/]; logs in {stack.state_dir / 'logs'}")
        raise typer.Exit(1)
    client = stack.client_env()
    work = work_dir or stack.state_dir.parent / "loop" / time.strftime("%Y%m%d-%H%M%S")
    env = LoopEnvironment(bootstrap_servers=client["RTML_KAFKA_BOOTSTRAP_SERVERS"],
                          redis_url=client["RTML_REDIS_URL"],
                          tracking_uri=client["RTML_MLFLOW_TRACKING_URI"], work_dir=work)
    try:
        result = run_loop(env, LoopScenario(), console)
    except (LoopFailed, ServiceFailed) as exc:
        console.print(f"[bold red]loop stopped:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    console.print(timeline_table(result))
    console.print(f"champion v{result.champion_before} -> v{result.champion_after} in "
                  f"{result.seconds:.0f} s; reports and logs in {work}", highlight=False)
