"""The ``rtml`` command tree: every library's commands are mounted where documented."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from rtml_cli.app import app

runner = CliRunner()


def _commands(help_text: str) -> set[str]:
    """Command names listed in a (rich or plain) help screen."""
    return set(re.findall(r"^[│|]?\s+([a-z][a-z-]+)\s{2,}", help_text, flags=re.M))


def test_root_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "150"})
    assert result.exit_code == 0, result.output
    assert {"up", "down", "status", "top", "traffic", "stack", "simulate", "replay", "dlq",
            "demo"} <= _commands(result.output)


@pytest.mark.parametrize(
    ("group", "expected"),
    [("stack", {"up", "down", "status", "env"}), ("dlq", {"show"})],
)
def test_groups_list_their_commands(group: str, expected: set[str]) -> None:
    result = runner.invoke(app, [group, "--help"], env={"COLUMNS": "150"})
    assert result.exit_code == 0, result.output
    assert expected <= _commands(result.output)


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output


def test_demo_refuses_to_run_without_kafka() -> None:
    result = runner.invoke(app, ["demo", "--without", "kafka"], env={"COLUMNS": "150"})
    assert result.exit_code == 2
    assert "needs kafka" in result.output


def test_demo_rejects_unknown_components() -> None:
    result = runner.invoke(app, ["demo", "--without", "zookeeper"], env={"COLUMNS": "150"})
    assert result.exit_code == 2
    assert "zookeeper" in result.output
