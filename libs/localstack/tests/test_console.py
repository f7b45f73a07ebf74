"""Consoles made by make_console are wide when output is piped, as wide as asked otherwise."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from rtml_localstack.console import PIPED_WIDTH, make_console


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_piped_console_is_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    console = make_console(file=io.StringIO())
    assert console.width == PIPED_WIDTH
    console.print("x" * 150)
    assert console.file.getvalue() == "x" * 150 + "\n"  # type: ignore[attr-defined]


def test_columns_and_an_explicit_width_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    assert make_console(file=io.StringIO()).width == 120
    monkeypatch.delenv("COLUMNS")
    assert make_console(file=io.StringIO(), width=90).width == 90


def test_a_terminal_keeps_the_width_rich_gives_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert make_console(file=_Terminal()).width == Console(file=_Terminal()).width
