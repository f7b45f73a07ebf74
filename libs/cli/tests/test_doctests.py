"""The runnable examples in the CLI's docstrings stay true."""

import doctest
import importlib

import pytest

MODULES = ["rtml_cli.platform.backoff", "rtml_cli.platform.catalog", "rtml_cli.platform.scrape"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
