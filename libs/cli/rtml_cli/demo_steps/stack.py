"""Demo step: start the local stack (or find it already running).

Uses the same orchestrator and launchers as ``rtml stack up``, in the same
state directory, so ``rtml stack status`` / ``down`` afterwards see exactly
what the demo started, and a second demo run adopts the running servers
instead of starting new ones.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from rtml_cli.demo_steps.context import DemoContext, DemoError
from rtml_localstack.stack import ComponentResult, Stack, build_launchers

_STYLE = {"started": "green", "running": "cyan", "skipped": "yellow", "failed": "bold red"}


def print_result(console: Console, result: ComponentResult) -> None:
    """One progress line per component, as soon as its outcome is known."""
    style = _STYLE.get(result.outcome, "")
    when = f" in {result.seconds:.1f} s" if result.seconds is not None else ""
    console.print(
        f"  [{style}]{result.outcome:>8}[/] {result.name:<10} {result.address}{when}",
        highlight=False,
    )
    if result.detail and result.outcome in ("failed", "skipped"):
        for line in result.detail.splitlines()[-8:]:
            console.print(f"           {line}", markup=False, highlight=False)


def start_stack(ctx: DemoContext) -> None:
    """Start every selected component; fail if a required one did not come up."""
    settings = ctx.settings
    stack = Stack(
        settings.state_dir,
        timeout_s=settings.stack_timeout_s,
        on_result=lambda result: print_result(ctx.console, result),
    )
    ctx.console.print(f"  state dir {stack.state_dir}", highlight=False)
    results = stack.up(build_launchers(list(settings.components), settings.ports))
    ctx.stack_results = results
    failed = [r for r in results if not r.ok]
    if failed:
        names = ", ".join(r.name for r in failed)
        raise DemoError(
            f"could not start: {names} (reasons above; logs in {stack.state_dir / 'logs'}).\n"
            "Fix the cause and run the demo again (running components are reused), "
            f"or leave a component out with --without {failed[0].name}. "
            "`rtml stack down` stops what did start."
        )
    ctx.client_env = stack.client_env()
    ctx.bootstrap_servers = ctx.client_env.get("RTML_KAFKA_BOOTSTRAP_SERVERS")
    ctx.require_kafka()
    ctx.add_section("local stack", components_table(results))


def components_table(results: list[ComponentResult]) -> Table:
    """Each component with its address and what the demo did with it."""
    table = Table(show_header=True, box=None, pad_edge=False)
    for column in ("component", "address", "state"):
        table.add_column(column, no_wrap=True)
    for result in results:
        style = _STYLE.get(result.outcome, "")
        note = "not installed (optional)" if result.outcome == "skipped" else result.outcome
        table.add_row(result.name, result.address, f"[{style}]{note}[/]")
    return table
