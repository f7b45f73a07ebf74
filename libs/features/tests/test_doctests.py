"""The runnable examples in the docstrings stay true."""

import doctest
import importlib

import pytest

MODULES = ["rtml_features.definitions", "rtml_features.baseline", "rtml_features.online",
           "rtml_features.stream", "rtml_features.rows", "rtml_features.vector_plan",
           "rtml_features.extended", "rtml_features.testing", "rtml_features.repo",
           "rtml_features.oracle", "rtml_features.batch_distinct", "rtml_features.batch_keys",
           "rtml_features.batch_previous", "rtml_features.batch_spread",
           "rtml_features.stream_generic", "rtml_features.generic_aggregates",
           "rtml_features.generic_rows", "rtml_features.request_generic",
           "rtml_features.online_store.redis.generic_layout"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
