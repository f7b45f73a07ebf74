"""The runnable examples in the training library's docstrings stay true."""

import doctest
import importlib

import pytest

MODULES = ["rtml_training.params", "rtml_training.calibration_report",
           "rtml_training.selection.space", "rtml_training.selection.families",
           "rtml_training.selection.search"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
