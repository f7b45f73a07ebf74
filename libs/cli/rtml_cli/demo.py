"""``rtml demo``: the Quick start in one command.

Starts the local stack, makes the default simulated data set (once), replays
two weeks of it to Kafka, sends three broken records, reads everything back
with a real consumer, computes features, trains and promotes models, then
runs the whole platform (``rtml up``) with live payments through the
decision API and prints what happened. The stack and the platform stay up,
so the "what next" commands work on the same servers.

The demo is the ordered list :data:`STEPS` over one
:class:`~rtml_cli.demo_steps.context.DemoContext`. Re-running is cheap:
running servers (and a running platform) are reused and the data set is
cached.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from rtml_cli.demo_steps.audit import audit
from rtml_cli.demo_steps.context import DemoContext, DemoError, DemoSettings, Step
from rtml_cli.demo_steps.dataset import ensure_dataset
from rtml_cli.demo_steps.features import compute_features
from rtml_cli.demo_steps.live import LIVE_SECONDS, run_live
from rtml_cli.demo_steps.malformed import produce_malformed
from rtml_cli.demo_steps.promote import promote_models
from rtml_cli.demo_steps.replay import replay_slice
from rtml_cli.demo_steps.served import RICH_DATA_DIR, select_feature_set
from rtml_cli.demo_steps.stack import start_stack
from rtml_cli.demo_steps.summary import print_summary
from rtml_cli.demo_steps.train import train_models
from rtml_localstack.console import make_console
from rtml_localstack.errors import StackError
from rtml_localstack.launchers import LAUNCHERS
from rtml_localstack.stack import select_components
from rtml_localstack.state import default_state_dir

# The demo keeps its data set where `rtml simulate` and `rtml replay` look by default.
from rtml_simulator.cli import DEFAULT_DATA_DIR

#: The demo, in order. Each step reads what earlier ones stored in the context.
STEPS: list[Step] = [
    Step("start the local stack", start_stack),
    Step("simulate transactions", ensure_dataset),
    Step("replay to Kafka", replay_slice),
    Step("produce 3 malformed transactions", produce_malformed),
    Step("audit: read everything back with a consumer", audit),
    Step("compute streaming features into Redis", compute_features),
    Step("train models on the data set and register them", train_models),
    Step("promote them through the registry's validation gate", promote_models),
    Step(f"run the whole platform: live payments through the decision API for "
         f"{LIVE_SECONDS:.0f} s", run_live),
]


def run_steps(ctx: DemoContext, steps: list[Step]) -> None:
    """Run ``steps`` in order with a numbered header and timing each; errors propagate."""
    for number, step in enumerate(steps, 1):
        ctx.console.print(f"[bold]{number}/{len(steps)} {step.title}[/]", highlight=False)
        started = time.perf_counter()
        step.run(ctx)
        ctx.console.print(f"  [dim]done in {time.perf_counter() - started:.1f} s[/]")


def run_demo(ctx: DemoContext, steps: list[Step] | None = None) -> None:
    """Every step, then the summary."""
    started = time.perf_counter()
    run_steps(ctx, STEPS if steps is None else steps)
    print_summary(ctx)
    ctx.console.print(f"[dim]demo took {time.perf_counter() - started:.0f} s[/]")


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def demo_command(
    days: Annotated[int, typer.Option(min=1, help="Days to replay.")] = 14,
    start_day: Annotated[int, typer.Option(min=0, help="First day to replay.")] = 0,
    data: Annotated[Path | None, typer.Option(
        help=f"Data set directory (generated once, reused while its config matches) "
             f"[default: {DEFAULT_DATA_DIR}; a feature set needing rich mode: "
             f"{RICH_DATA_DIR}].", show_default=False)] = None,
    feature_repo: Annotated[Path | None, typer.Option(
        help="Feature repo folder to serve (RTML_FEATURE_REPO for every step and service), "
             "e.g. examples/feature_repos/payments [default: the handbook's].",
        show_default=False)] = None,
    feature_set: Annotated[str | None, typer.Option(
        help="Feature set to replay, train and serve (RTML_FEATURE_SET), e.g. payments "
             "[default: $RTML_FEATURE_SET, else extended].", show_default=False)] = None,
    state_dir: Annotated[Path | None, typer.Option(
        envvar="RTML_STATE_DIR", show_default=False,
        help="Stack state directory, default ./.rtml/stack (`rtml stack` must use the same).",
    )] = None,
    without: Annotated[str | None, typer.Option(
        help="Comma-separated stack components to leave out (kafka is required).")] = None,
    kafka_port: Annotated[int, typer.Option(help="Kafka-protocol broker port.")] = (
        LAUNCHERS["kafka"].default_port),
    redis_port: Annotated[int, typer.Option(help="Redis port.")] = (
        LAUNCHERS["redis"].default_port),
    mlflow_port: Annotated[int, typer.Option(help="MLflow port.")] = (
        LAUNCHERS["mlflow"].default_port),
    cassandra_port: Annotated[int, typer.Option(help="Cassandra CQL port.")] = (
        LAUNCHERS["cassandra"].default_port),
    prometheus_port: Annotated[int, typer.Option(help="Prometheus port.")] = (
        LAUNCHERS["prometheus"].default_port),
) -> None:
    """Start the local stack, simulate and replay transactions, show what happened."""
    try:
        components = select_components(None, _split(without))
    except StackError as exc:
        raise typer.BadParameter(str(exc), param_hint="--without") from None
    if "kafka" not in components:
        raise typer.BadParameter("the demo needs kafka", param_hint="--without")
    settings = DemoSettings(
        state_dir=(state_dir or default_state_dir()).resolve(),
        data_dir=data or DEFAULT_DATA_DIR,
        start_day=start_day,
        days=days,
        components=components,
        ports={"kafka": kafka_port, "redis": redis_port, "mlflow": mlflow_port,
               "cassandra": cassandra_port, "prometheus": prometheus_port},
        feature_repo=feature_repo,
        feature_set=feature_set,
    )
    console = make_console()
    if feature_repo is not None and not feature_repo.is_dir():
        raise typer.BadParameter(f"{feature_repo} is not a folder", param_hint="--feature-repo")
    try:
        settings = select_feature_set(settings, data_given=data is not None)
    except DemoError as exc:
        raise typer.BadParameter(str(exc), param_hint="--feature-set/--feature-repo") from None
    ctx = DemoContext(settings=settings, console=console)
    try:
        run_demo(ctx)
    except DemoError as exc:
        console.print(f"[bold red]demo stopped:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; the stack (and the platform, if it started) keep "
                      "running: `rtml down` stops the platform, `rtml stack down` the stack[/]")
        raise typer.Exit(130) from None
