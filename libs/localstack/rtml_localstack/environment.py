"""Which ``RTML_*`` variables a test drops so that a service's defaults are really its defaults.

Tests start services (in-process or as subprocesses) without the developer's own
``RTML_*`` settings, yet the test session itself pins some for everything it runs:
the root ``conftest.py`` sets the platform-wide feature set (``RTML_FEATURE_SET``,
``rtml_features.baseline.FEATURE_SET_ENV``) to ``baseline``. One rule for both, so a
new session-wide setting is added here once instead of at every place that drops.

>>> is_developer_setting("RTML_REDIS_URL"), is_developer_setting("RTML_FEATURE_SET")
(True, False)
>>> without_developer_settings({"PATH": "/bin", "RTML_KAFKA_BOOTSTRAP_SERVERS": "x"})
{'PATH': '/bin'}
"""

from __future__ import annotations

from collections.abc import Mapping

#: ``RTML_*`` variables the test session sets for everything it starts: kept.
SESSION_SETTINGS = frozenset({"RTML_FEATURE_SET"})


def is_developer_setting(name: str) -> bool:
    """An ``RTML_*`` variable to drop: any but the session's own (:data:`SESSION_SETTINGS`)."""
    return name.upper().startswith("RTML_") and name not in SESSION_SETTINGS


def without_developer_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the variables :func:`is_developer_setting` names."""
    return {name: value for name, value in environ.items() if not is_developer_setting(name)}
