"""Demo step: make sure the simulated data set exists, generating it only once.

A data set directory carries the config that produced it (``manifest.json``),
and generation is deterministic, so "same config in the manifest" means
"same bytes": a re-run reuses it. Any other content (different config, an
older format, a half-written directory) is regenerated.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from rtml_cli.demo_steps.context import DemoContext
from rtml_simulator.config import SimulationConfig
from rtml_simulator.io import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    TRANSACTIONS_FILE,
    read_manifest,
    write_dataset,
)
from rtml_simulator.simulate import STAGES, simulate


@dataclass(frozen=True)
class DatasetInfo:
    """The data set the demo replays, from its manifest."""

    path: Path
    transactions: int
    days: int
    fraud: int
    fraud_rate: float
    #: True when an existing data set was reused.
    cached: bool
    seconds: float


def _normalised(config: SimulationConfig) -> Any:
    """The config as it reads back from JSON (tuples become lists, and so on)."""
    return json.loads(json.dumps(config.to_dict()))


def cached_manifest(data_dir: Path, config: SimulationConfig) -> dict[str, Any] | None:
    """The manifest of ``data_dir`` if it holds a complete data set made from ``config``."""
    if not (data_dir / MANIFEST_FILE).is_file() or not (data_dir / TRANSACTIONS_FILE).is_file():
        return None
    try:
        manifest = read_manifest(data_dir)
    except (OSError, ValueError):  # unreadable or not JSON: regenerate
        return None
    if manifest.get("format_version") != FORMAT_VERSION:
        return None
    return manifest if manifest.get("config") == _normalised(config) else None


def generate(ctx: DemoContext) -> dict[str, Any]:
    """Simulate and write the data set, with a progress bar over the stages."""
    steps = [*STAGES, "writing Parquet"]
    with Progress(SpinnerColumn(), TextColumn("  {task.description}"), BarColumn(),
                  TimeElapsedColumn(), console=ctx.console, transient=True) as progress:
        task = progress.add_task(steps[0], total=len(steps))

        def on_stage(name: str) -> None:
            progress.update(task, description=name, completed=steps.index(name))

        sim = simulate(ctx.settings.simulation, on_stage=on_stage)
        on_stage(steps[-1])
        write_dataset(sim, ctx.settings.data_dir)
        progress.update(task, completed=len(steps))
    return read_manifest(ctx.settings.data_dir)


def ensure_dataset(ctx: DemoContext) -> None:
    """Reuse the data set if its config matches, else generate it."""
    data_dir = ctx.settings.data_dir
    started = time.perf_counter()
    manifest = cached_manifest(data_dir, ctx.settings.simulation)
    cached = manifest is not None
    if manifest is None:
        config = ctx.settings.simulation
        ctx.console.print(
            f"  simulating {config.n_customers:,} customers x {config.n_days} days "
            f"into {data_dir}", highlight=False,
        )
        manifest = generate(ctx)
    seconds = time.perf_counter() - started
    summary = manifest["summary"]
    info = DatasetInfo(
        path=data_dir,
        transactions=int(summary["n_transactions"]),
        days=int(summary["n_days"]),
        fraud=int(summary["n_fraud"]),
        fraud_rate=float(summary["fraud_rate"]),
        cached=cached,
        seconds=seconds,
    )
    ctx.dataset = info
    how = "reused (same config)" if cached else f"generated in {seconds:.1f} s"
    ctx.console.print(f"  {info.transactions:,} transactions in {data_dir}: {how}",
                      highlight=False)
    ctx.add_section("data set", dataset_table(info))


def dataset_table(info: DatasetInfo) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("path", f"{info.path}" + (" (cached)" if info.cached else ""))
    table.add_row("transactions", f"{info.transactions:,}")
    table.add_row("days", f"{info.days}")
    table.add_row("fraud", f"{info.fraud:,} ({info.fraud_rate:.2%})")
    return table
