"""Demo step: replay a slice of the data set to the stack's Kafka, at full speed.

Transactions go to ``transactions`` and, a week later in event time, their
labels to ``labels`` (see :mod:`rtml_simulator.replay`). The demo replays
as fast as possible: it shows the pipeline, not a wall-clock simulation.
"""

from __future__ import annotations

from rich.table import Table

from rtml_cli.demo_steps.context import DemoContext, DemoError, DemoSettings
from rtml_common.config import KafkaSettings
from rtml_common.kafka.producer import DeliveryError
from rtml_simulator.pacing import Pace
from rtml_simulator.replay import ReplayOptions, ReplayReport, replay


def replay_slice(ctx: DemoContext) -> None:
    """Replay days ``[start_day, start_day + days)`` and keep the report."""
    settings = ctx.settings
    bootstrap = ctx.require_kafka()
    available = ctx.dataset.days if ctx.dataset else settings.simulation.n_days
    if settings.start_day + settings.days > available:
        raise DemoError(
            f"the data set has {available} days; days {settings.start_day}-"
            f"{settings.start_day + settings.days - 1} are not all in it (--start-day/--days)"
        )
    from rtml_features.baseline import default_feature_set, get_feature_set

    served = get_feature_set(default_feature_set())  # RTML_FEATURE_SET in RTML_FEATURE_REPO
    options = ReplayOptions(start_day=settings.start_day, days=settings.days,
                            pace=Pace.max_speed(), schema=served.schema,
                            transactions_topic=served.source_topic,
                            labels_topic=served.label_topic)
    ctx.console.print(
        f"  days {settings.start_day}-{settings.start_day + settings.days - 1} of "
        f"{settings.data_dir} -> {bootstrap} ({options.pace.describe()}) as "
        f"{served.schema.name!r} events of feature set {served.name!r}", highlight=False,
    )
    try:
        report = replay(settings.data_dir, options, KafkaSettings(bootstrap_servers=bootstrap),
                        progress=True, console=ctx.console)
    except DeliveryError as exc:
        raise DemoError(f"the broker did not acknowledge every record: {exc}") from exc
    ctx.replay = report
    ctx.console.print(
        f"  {report.events:,} events in {report.seconds:.1f} s "
        f"({report.events_per_second:,.0f} events/s)", highlight=False,
    )
    ctx.add_section("replay", replay_table(report))
    next_day = settings.start_day + settings.days
    if next_day < available:
        ctx.next_commands.append((
            f"rtml replay --data {settings.data_dir} --start-day {next_day} --days 7 "
            f"--speedup 3600" + _bootstrap_option(bootstrap) + _feature_options(settings),
            "replay the following week, one event-hour per second",
        ))


def _bootstrap_option(bootstrap: str) -> str:
    """``--bootstrap-servers X`` unless X is what the commands default to anyway."""
    return "" if bootstrap == KafkaSettings().bootstrap_servers else (
        f" --bootstrap-servers {bootstrap}")


def _feature_options(settings: DemoSettings) -> str:
    """The demo's ``--feature-repo`` / ``--feature-set``, for commands that take them."""
    return "".join([
        f" --feature-repo {settings.feature_repo}" if settings.feature_repo else "",
        f" --feature-set {settings.feature_set}" if settings.feature_set else ""])


def replay_table(report: ReplayReport) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for topic, count in report.topics.items():
        table.add_row(f"to {topic}", f"{count:,}")
    table.add_row("events", f"{report.events:,}")
    table.add_row("event time",
                  f"{report.slice_start:%Y-%m-%d} -> {report.slice_end:%Y-%m-%d}")
    table.add_row("wall time", f"{report.seconds:.1f} s")
    table.add_row("achieved rate", f"{report.events_per_second:,.0f} events/s")
    return table
