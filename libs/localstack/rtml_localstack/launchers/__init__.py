"""Component launchers, one module each, and the registry the stack uses.

``COMPONENTS`` is the user-selectable set in start order (dependencies
first); ``LAUNCHERS`` also holds internal helpers (``s3`` for the durable
broker) so the stack can rebuild any launcher from its state file.
"""

from __future__ import annotations

from rtml_localstack.launchers.base import ComponentLauncher, ComponentUnavailable, NotReady
from rtml_localstack.launchers.cassandra import CassandraLauncher
from rtml_localstack.launchers.kafka import KafkaLauncher
from rtml_localstack.launchers.mlflow import MlflowLauncher
from rtml_localstack.launchers.prometheus import PrometheusLauncher
from rtml_localstack.launchers.redis import RedisLauncher
from rtml_localstack.launchers.s3 import S3Launcher

#: Selectable components, in start order.
COMPONENTS: tuple[str, ...] = ("kafka", "redis", "mlflow", "cassandra", "prometheus")

#: Every launcher by name, including internal ones.
LAUNCHERS: dict[str, type[ComponentLauncher]] = {
    cls.name: cls
    for cls in (
        S3Launcher,
        KafkaLauncher,
        RedisLauncher,
        MlflowLauncher,
        CassandraLauncher,
        PrometheusLauncher,
    )
}

#: Start order of everything (internal helpers before their dependants).
START_ORDER: tuple[str, ...] = ("s3", *COMPONENTS)

__all__ = [
    "COMPONENTS",
    "LAUNCHERS",
    "START_ORDER",
    "CassandraLauncher",
    "ComponentLauncher",
    "ComponentUnavailable",
    "KafkaLauncher",
    "MlflowLauncher",
    "NotReady",
    "PrometheusLauncher",
    "RedisLauncher",
    "S3Launcher",
]
