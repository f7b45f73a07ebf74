"""``rtml loop``: the closed retraining loop on the local stack, with its timeline.

Starts (or reuses) the local stack's MLflow, so the versions the loop
registers can be browsed there afterwards, under a model name of the run's
own. The broker and Redis are the run's own too, started in its work
directory and stopped at the end: the stack's topics hold whatever `make
demo` and earlier loops replayed, with the same customer ids and event
times, which would mix into this run's windows and features. Then
:func:`rtml_cli.loop.run.run_loop`, and each milestone with its time.
MLflow stays up afterwards, and the last line says so and how to stop it.
"""

from __future__ import annotations

import shlex
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rtml_cli.demo_steps.stack import print_result
from rtml_cli.loop.run import LoopEnvironment, LoopFailed, LoopResult, run_loop
from rtml_cli.loop.scenario import LoopScenario
from rtml_localstack.console import make_console
from rtml_localstack.errors import StackError
from rtml_localstack.services import ServiceFailed
from rtml_localstack.stack import Stack, build_launchers
from rtml_localstack.state import default_state_dir
from rtml_localstack.testing import KafkaBroker, RedisServer

COMPONENTS = ["mlflow"]


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


def still_running_note(tracking_uri: str, model_name: str, state_dir: Path) -> str:
    """What the loop leaves running, and how to stop it: the stack's MLflow (with
    whatever else of the stack was already up) outlives the run on purpose, so
    its models can be browsed; the run's own broker and Redis are stopped."""
    down = "rtml stack down"
    if state_dir.resolve() != default_state_dir().resolve():
        down += f" --state-dir {shlex.quote(str(state_dir))}"
    return (f"MLflow keeps running at {tracking_uri} (model {model_name}), with the rest of "
            f"the local stack ({state_dir}); stop them with `{down}`. "
            "The run's own broker and Redis are already stopped.")


def loop_command(
    work_dir: Annotated[Path | None, typer.Option(
        help="Where the data, archive, reports and service logs go (default: a new "
             "directory under the stack state dir).", show_default=False)] = None,
    state_dir: Annotated[Path | None, typer.Option(
        envvar="RTML_STATE_DIR", show_default=False,
        help="Stack state directory, default ./.rtml/stack.")] = None,
) -> None:
    """Run the closed loop: drift alert -> retrain -> shadow -> graduation."""
    console = make_console()
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
    run_id = time.strftime("%Y%m%d-%H%M%S")
    work = (work_dir or stack.state_dir.parent / "loop" / run_id).resolve()
    # A model of its own: the stack's MLflow may hold `make demo`'s fraud-detector with
    # its own challenger, which the loop's auditor would otherwise judge too.
    model_name = f"loop-{run_id}"
    try:
        _run(console, client, work, model_name)
    finally:  # said whether the loop made it or not: the stack is up either way
        console.print(still_running_note(client["RTML_MLFLOW_TRACKING_URI"], model_name,
                                         stack.state_dir), highlight=False)


def _run(console: Console, client: dict[str, str], work: Path, model_name: str) -> None:
    """The loop on a broker and Redis of its own, against the stack's MLflow."""
    console.print("[bold]a broker and Redis for this run[/]")
    with ExitStack() as servers:
        broker = KafkaBroker.start_new(work / "kafka")
        servers.callback(broker.close)
        redis = RedisServer.start_new(work / "redis")
        servers.callback(redis.close)
        console.print(f"  kafka {broker.bootstrap_servers}, redis {redis.url}", highlight=False)
        env = LoopEnvironment(bootstrap_servers=broker.bootstrap_servers, redis_url=redis.url,
                              tracking_uri=client["RTML_MLFLOW_TRACKING_URI"], work_dir=work,
                              model_name=model_name)
        try:
            result = run_loop(env, LoopScenario(), console)
        except (LoopFailed, ServiceFailed) as exc:
            console.print(f"[bold red]loop stopped:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None
    console.print(timeline_table(result))
    console.print(f"{env.model_name}: champion v{result.champion_before} -> "
                  f"v{result.champion_after} in "
                  f"{result.seconds:.0f} s; reports and logs in {work}", highlight=False)
