"""Test-session settings shared by every package's tests.

The platform's default feature set is ``extended`` (``RTML_FEATURE_SET``, see
``rtml_features.baseline.default_feature_set``). Most tests were written against the
handbook's ``baseline`` set — toy champions trained on its 15 inputs, expected vectors
computed with ``BASELINE`` — and start services that pick their set from the environment,
so the session pins ``baseline`` unless the caller chose otherwise; the tests of the
``extended`` set select it explicitly (per-service variables or ``monkeypatch``), and
``libs/features/tests/test_definitions.py`` checks the unpinned default.
"""

from __future__ import annotations

import os

from rtml_features.baseline import FEATURE_SET_ENV

os.environ.setdefault(FEATURE_SET_ENV, "baseline")
