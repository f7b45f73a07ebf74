"""rtml's local stack without Docker, and pytest fixtures on top of it.

``rtml stack up`` (:mod:`rtml_localstack.cli`) runs the platform's servers as
local processes: the Tansu Kafka-protocol broker, Redis, the MLflow server,
a Cassandra 1.2 stand-in and Prometheus. The same launchers back the pytest
fixtures in :mod:`rtml_localstack.pytest_plugin`. See docs/local-stack.md.
"""

from rtml_localstack.errors import ComponentUnavailable, NotReady, StackError
from rtml_localstack.stack import ComponentResult, Stack, build_launchers, select_components

__all__ = [
    "ComponentResult",
    "ComponentUnavailable",
    "NotReady",
    "Stack",
    "StackError",
    "build_launchers",
    "select_components",
]
