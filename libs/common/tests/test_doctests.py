"""The runnable examples in the docstrings stay true."""

import doctest
import importlib

import pytest

MODULES = ["rtml_common.events", "rtml_common.topics", "rtml_common.serde", "rtml_common.files",
           "rtml_common.config", "rtml_common.kafka.dead_letter", "rtml_common.gc_policy",
           "rtml_common.strict_yaml", "rtml_common.schema", "rtml_common.handbook"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
