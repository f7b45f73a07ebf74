"""``rtml simulate`` and ``rtml replay``: the simulator's two commands.

``app`` has no callback on purpose: the top-level ``rtml`` command mounts
these two commands directly (``rtml simulate``, ``rtml replay``). Run
standalone with ``python -m rtml_simulator.cli simulate ...``.
"""

from __future__ import annotations

import os
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from rtml_common.config import KafkaSettings
from rtml_common.kafka.producer import DeliveryError
from rtml_simulator.config import CardTesting, DistributionShift, RichMode, SimulationConfig
from rtml_simulator.io import write_dataset
from rtml_simulator.pacing import Pace
from rtml_simulator.replay import ReplayOptions, ReplayReport, ReplaySchemaError, replay
from rtml_simulator.simulate import STAGES, Summary, simulate

if TYPE_CHECKING:
    from rtml_features.definitions import FeatureSet

app = typer.Typer(help="Simulate card transactions and replay them to Kafka.",
                  no_args_is_help=True, add_completion=False)
console = Console()

DEFAULT_DATA_DIR = Path("data/simulator")
_DEFAULTS = SimulationConfig()


def _parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected YYYY-MM-DD, got {value!r}") from None


def summary_table(summary: Summary, seconds: float | None = None) -> Table:
    """Headline figures of a simulation run."""
    table = Table(title="simulation", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("transactions", f"{summary.n_transactions:,}")
    per_day = f"{summary.per_day_min:,} / {summary.per_day_mean:,.0f} / {summary.per_day_max:,}"
    table.add_row("per day (min / mean / max)", per_day)
    table.add_row("fraud", f"{summary.n_fraud:,} ({summary.fraud_rate:.3%})")
    for scenario, count in sorted(summary.per_scenario.items()):
        if scenario:
            table.add_row(f"  scenario {scenario}", f"{count:,}")
    table.add_row("customers with terminals", f"{summary.active_customers:,}")
    table.add_row("terminals per customer", f"{summary.mean_terminals_per_customer:.1f}")
    if seconds is not None:
        table.add_row("seconds", f"{seconds:.2f}")
    return table


def report_table(report: ReplayReport) -> Table:
    """What a replay sent, per topic, and how fast."""
    table = Table(title="replay", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for topic, count in report.topics.items():
        table.add_row(f"topic {topic}", f"{count:,}")
    table.add_row("  labels of earlier transactions", f"{report.earlier_labels:,}")
    table.add_row("  labels published at the end", f"{report.pending_labels:,}")
    table.add_row("  labels withheld (due after the slice)", f"{report.withheld_labels:,}")
    table.add_row("event time", f"{report.slice_start:%Y-%m-%d %H:%M} -> "
                                f"{report.slice_end:%Y-%m-%d %H:%M}")
    table.add_row("pace", report.pace)
    table.add_row("seconds", f"{report.seconds:.2f}")
    table.add_row("achieved rate", f"{report.events_per_second:,.0f} events/s")
    return table


@app.command("simulate")
def simulate_command(
    out: Annotated[Path, typer.Option(help="Output directory.")] = DEFAULT_DATA_DIR,
    customers: Annotated[int, typer.Option(min=1)] = _DEFAULTS.n_customers,
    terminals: Annotated[int, typer.Option(min=1)] = _DEFAULTS.n_terminals,
    days: Annotated[int, typer.Option(min=1)] = _DEFAULTS.n_days,
    start_date: Annotated[str, typer.Option(help="YYYY-MM-DD (UTC).")] = (
        _DEFAULTS.start_date.isoformat()),
    seed: Annotated[int, typer.Option(min=0)] = _DEFAULTS.seed,
    radius: Annotated[float, typer.Option(help="Customer -> terminal radius.")] = (
        _DEFAULTS.radius),
    card_testing_from: Annotated[int | None, typer.Option(
        help="Drift: start the card-testing fraud pattern (scenario 4) on this day.")] = None,
    card_testing_until: Annotated[int | None, typer.Option(
        help="Drift: stop card testing on this day (exclusive).")] = None,
    card_testing_cards_per_day: Annotated[int, typer.Option(
        help="Drift: cards tested per day.")] = 5,
    shift_from: Annotated[int | None, typer.Option(
        help="Drift: shift amounts / times of day from this day.")] = None,
    amount_scale: Annotated[float, typer.Option(
        help="Drift: multiply genuine amounts by this from --shift-from.")] = 1.0,
    hour_shift: Annotated[float, typer.Option(
        help="Drift: move times of day by this many hours from --shift-from.")] = 0.0,
    rich: Annotated[bool, typer.Option(
        "--rich", help="Rich mode: device, IP address, merchant category, country and channel "
                       "per payment; account takeover (scenario 5) and card testing from one "
                       "device (scenario 6).")] = False,
) -> None:
    """Generate a transaction data set (Parquet) with the reference fraud scenarios."""
    if shift_from is None and (amount_scale != 1.0 or hour_shift != 0.0):
        raise typer.BadParameter("--amount-scale / --hour-shift need --shift-from DAY")
    if card_testing_from is None and card_testing_until is not None:
        raise typer.BadParameter("--card-testing-until needs --card-testing-from DAY")
    try:
        config = SimulationConfig(
            n_customers=customers, n_terminals=terminals, n_days=days,
            start_date=_parse_date(start_date), radius=radius, seed=seed,
            card_testing=None if card_testing_from is None else CardTesting(
                start_day=card_testing_from, end_day=card_testing_until,
                cards_per_day=card_testing_cards_per_day),
            shift=None if shift_from is None else DistributionShift(
                start_day=shift_from, amount_scale=amount_scale, hour_shift=hour_shift),
            rich=RichMode() if rich else None,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None

    started = time.perf_counter()
    steps = [*STAGES, "writing Parquet"]
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task(steps[0], total=len(steps))

        def on_stage(name: str) -> None:
            progress.update(task, description=name, completed=steps.index(name))

        sim = simulate(config, on_stage=on_stage)
        on_stage(steps[-1])
        write_dataset(sim, out)
        progress.update(task, completed=len(steps))
    seconds = time.perf_counter() - started
    console.print(summary_table(sim.summary(), seconds))
    console.print(f"wrote [bold]{out}[/bold]")


def _served_feature_set(name: str | None, repo: Path | None) -> FeatureSet:
    """The feature set whose events the replay publishes, as the services resolve it.

    ``--feature-repo`` sets ``RTML_FEATURE_REPO`` for this process; a repo that does not
    load or an unknown name is printed and exits with status 2.
    """
    from rtml_features.baseline import default_feature_set, get_feature_set
    from rtml_features.repo import FEATURE_REPO_ENV, RepoError

    if repo is not None:
        os.environ[FEATURE_REPO_ENV] = str(repo)
    try:
        return get_feature_set(name or default_feature_set())
    except (RepoError, KeyError) as exc:
        console.print(f"[red]{exc.args[0] if exc.args else exc}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None


@app.command("replay")
def replay_command(
    data: Annotated[Path, typer.Option(help="Data set directory (from `simulate`).")] = (
        DEFAULT_DATA_DIR),
    bootstrap_servers: Annotated[str | None, typer.Option(
        help="Kafka bootstrap servers [default: $RTML_KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092]",
        show_default=False)] = None,
    rate: Annotated[float | None, typer.Option(help="Fixed rate, events/s.")] = None,
    speedup: Annotated[float | None, typer.Option(
        help="Event-time speedup (3600 = one event-hour per second).")] = None,
    max_speed: Annotated[bool, typer.Option(
        "--max-speed", help="As fast as possible (the default).")] = False,
    start_day: Annotated[int, typer.Option(min=0, help="First day to replay.")] = 0,
    days: Annotated[int | None, typer.Option(min=1, help="Days to replay [default: all].")] = None,
    limit: Annotated[int | None, typer.Option(
        min=0, help="At most this many transactions.")] = None,
    label_delay_days: Annotated[float, typer.Option(
        min=0, help="A label is published this long (event time) after its transaction.")] = 7.0,
    pending_labels: Annotated[bool, typer.Option(
        help="Publish, at the end, labels due after the slice end.")] = False,
    earlier_labels: Annotated[bool, typer.Option(
        help="Publish labels of transactions before the slice that fall due in it.")] = True,
    feature_set: Annotated[str | None, typer.Option(
        help="Feature set whose event schema the payments follow (its fields, topic and "
             "partition key) [default: $RTML_FEATURE_SET, else extended].",
        show_default=False)] = None,
    feature_repo: Annotated[Path | None, typer.Option(
        help="Feature repo folder declaring --feature-set (sets RTML_FEATURE_REPO for this "
             "command) [default: $RTML_FEATURE_REPO, else the handbook's].",
        show_default=False)] = None,
    transactions_topic: Annotated[str, typer.Option(
        help="Topic of the payments [default: the feature set's event topic].",
        show_default=False)] = "",
    labels_topic: Annotated[str | None, typer.Option(
        help="Topic of the labels [default: the feature set's label topic].",
        show_default=False)] = None,
    create_topics: Annotated[bool, typer.Option(help="Create missing topics first.")] = True,
    replication_factor: Annotated[int, typer.Option(
        help="For created topics; -1 = broker default.")] = -1,
    out_of_order: Annotated[float, typer.Option(
        min=0.0, max=1.0,
        help="Fraction of transactions sent late (out of order), to test lateness.")] = 0.0,
    out_of_order_max_s: Annotated[float, typer.Option(
        min=0.0, help="How much later (event-time seconds) a delayed transaction may be sent.",
    )] = 240.0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Replay a data set to Kafka in event-time order, with delayed labels."""
    modes = (("--rate", rate is not None), ("--speedup", speedup is not None),
             ("--max-speed", max_speed))
    chosen = [name for name, on in modes if on]
    if len(chosen) > 1:
        raise typer.BadParameter(f"choose one of {', '.join(chosen)}")
    served = _served_feature_set(feature_set, feature_repo)
    try:
        pace = (Pace.rate(rate) if rate is not None
                else Pace.speedup(speedup) if speedup is not None else Pace.max_speed())
        options = ReplayOptions(
            start_day=start_day, days=days, limit=limit,
            label_delay=timedelta(days=label_delay_days), pending_labels=pending_labels,
            earlier_labels=earlier_labels, pace=pace, schema=served.schema,
            transactions_topic=transactions_topic or served.source_topic,
            labels_topic=labels_topic or served.label_topic, create_topics=create_topics,
            replication_factor=replication_factor, out_of_order_fraction=out_of_order,
            out_of_order_max=timedelta(seconds=out_of_order_max_s),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    settings = (KafkaSettings(bootstrap_servers=bootstrap_servers) if bootstrap_servers
                else KafkaSettings())
    console.print(f"replaying [bold]{data}[/bold] to {settings.bootstrap_servers} "
                  f"({pace.describe()}) as {served.schema.name!r} events of feature set "
                  f"{served.name!r}, started {datetime.now():%H:%M:%S}")
    try:
        report = replay(data, options, settings, progress=progress, console=console)
    except (FileNotFoundError, ReplaySchemaError) as exc:
        console.print(f"[red]{exc}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    except DeliveryError as exc:
        console.print(f"[red]delivery failed, events may be missing: {exc}[/red]")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: events queued so far were flushed[/yellow]")
        raise typer.Exit(130) from None
    console.print(report_table(report))


if __name__ == "__main__":
    app()
