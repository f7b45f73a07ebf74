"""The ``rtml`` command: one entry point that mounts each library's commands.

Each library keeps its own typer app (so it also runs standalone with
``python -m``); this module only wires them together, which keeps the
libraries free of any dependency on the CLI package.
"""

from __future__ import annotations

import typer

import rtml_localstack.cli
import rtml_simulator.cli
from rtml_cli import dlq, features
from rtml_cli.demo import demo_command
from rtml_cli.loop.command import loop_command
from rtml_cli.platform.command import down_command, status_command, up_command
from rtml_cli.top.command import top_command
from rtml_cli.traffic.command import traffic_command
from rtml_cli.train import train_command

app = typer.Typer(
    help="rtml: real-time ML fraud decisioning, run locally.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("up")(up_command)
app.command("down")(down_command)
app.command("status")(status_command)
app.add_typer(rtml_localstack.cli.app, name="stack")
# No name: the simulator app has no callback, so its commands are mounted
# directly as `rtml simulate` and `rtml replay`.
app.add_typer(rtml_simulator.cli.app)
app.add_typer(dlq.app, name="dlq")
app.add_typer(features.app, name="features")
app.command("demo")(demo_command)
app.command("train")(train_command)
app.command("loop")(loop_command)
app.command("traffic")(traffic_command)
app.command("top")(top_command)


def main() -> None:
    """Console-script entry point (``rtml``)."""
    app()


if __name__ == "__main__":
    main()
