"""Fixtures shared by the tests of every service under ``services/``.

pytest loads this file for every test below this folder, so each service's
``tests/`` folder uses these fixtures without importing anything.
"""

from __future__ import annotations

import os

import pytest

from rtml_localstack.environment import is_developer_setting


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop RTML_* variables of the developer's shell so defaults are really defaults.

    Not autouse: a module opts in (``pytestmark = pytest.mark.usefixtures(...)``),
    so tests that get their settings from fixtures' environment keep it.
    """
    for name in [name for name in os.environ if is_developer_setting(name)]:
        monkeypatch.delenv(name)
