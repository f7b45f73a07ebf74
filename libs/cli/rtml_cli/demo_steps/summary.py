"""Demo step: print what happened (every step's section) and what to try next."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from rich.padding import Padding
from rich.rule import Rule

from rtml_cli.demo_steps.context import DemoContext
from rtml_common.config import KafkaSettings
from rtml_localstack.state import default_state_dir


def what_next(ctx: DemoContext) -> list[tuple[str, str]]:
    """The follow-up commands, with the options this run needed (state dir, broker)."""
    state = ctx.settings.state_dir.resolve()
    state_opt = "" if state == default_state_dir() else f" --state-dir {shlex.quote(str(state))}"
    bootstrap = ctx.bootstrap_servers or ""
    kafka_opt = ("" if not bootstrap or bootstrap == KafkaSettings().bootstrap_servers
                 else f" --bootstrap-servers {bootstrap}")
    return [
        (f"rtml stack status{state_opt}", "the servers: pids, ports, health, logs"),
        (f"rtml dlq show transactions{kafka_opt}", "every dead-lettered transaction and why"),
        *ctx.next_commands,
        (f'eval "$(rtml stack env{state_opt})"', "point services and tools at this stack"),
        (f"rtml stack down{state_opt}", "stop the stack (also: make stack-down)"),
    ]


def activate_hint() -> str | None:
    """How to get ``rtml`` on PATH, if the shell would not find this very command.

    ``make demo`` runs ``.venv/bin/rtml`` without activating the venv, so a
    new user's shell has no ``rtml`` yet.
    """
    bin_dir = Path(sys.executable).parent
    found = shutil.which("rtml")
    if found and Path(found).parent.resolve() == bin_dir.resolve():
        return None
    try:
        shown = os.path.relpath(bin_dir)
    except ValueError:
        shown = str(bin_dir)
    shown = shown if shown.startswith(("/", ".")) else f"./{shown}"
    return f"first: source {shown}/activate  (or call {shown}/rtml)"


def print_summary(ctx: DemoContext) -> None:
    """Every section the steps added, in step order, then "what next".

    Commands are printed one per line without rich's wrapping (``soft_wrap``)
    so they can be copied whole from any terminal width.
    """
    console = ctx.console
    console.print()
    console.print(Rule("[bold]what happened"))
    for section in ctx.sections:
        console.print(f"[bold]{section.title}[/]")
        console.print(Padding(section.body, (0, 0, 1, 2), expand=False))
    console.print(Rule("[bold]what next"))
    hint = activate_hint()
    if hint:
        console.print(f"[dim]{hint}[/]", soft_wrap=True, highlight=False)
    served = ctx.settings.feature_env()
    if served:  # the commands below serve the demo's set only with its variables
        console.print("[dim]and, for this feature set:[/] export " + " ".join(
            f"{name}={value}" for name, value in served.items()), soft_wrap=True,
            highlight=False, markup=True)
    for command, why in what_next(ctx):
        console.print(f"  [dim]# {why}[/]", highlight=False)
        console.print(f"  [bold cyan]{command}[/]", soft_wrap=True, highlight=False,
                      markup=True)
