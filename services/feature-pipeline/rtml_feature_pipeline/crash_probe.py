"""Running the feature pipeline as a process to crash it: its environment and what to watch.

For kill -9 tests (``tests/test_crash_duplicates.py``, the fault suite in
``tests/faults``): :func:`pipeline_env` configures a ``python -m
rtml_feature_pipeline`` process (with :class:`rtml_localstack.crash.ServiceProcess`),
and :func:`published_since_checkpoint` says when a kill would leave vectors
published after the last checkpoint — the case that used to duplicate them.
"""

from __future__ import annotations

import redis

from rtml_common.config import KafkaSettings
from rtml_common.events import FeatureVector
from rtml_common.kafka.published import end_offsets
from rtml_common.topics import spec_for_event
from rtml_feature_pipeline.checkpoint import Checkpoint, checkpoint_key
from rtml_features.baseline import BASELINE
from rtml_features.definitions import FeatureSet

FEATURES_TOPIC = spec_for_event(FeatureVector).name


def pipeline_env(bootstrap: str, redis_url: str, group: str,
                 checkpoint_interval_s: float = 1.0, exit_when_idle_s: float = 4.0,
                 feature_set: FeatureSet = BASELINE) -> dict[str, str]:
    """The environment of a feature-pipeline process under test."""
    return {
        "RTML_FEATURE_PIPELINE_FEATURE_SET": feature_set.name,
        "RTML_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RTML_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "RTML_REDIS_URL": redis_url,
        "RTML_FEATURE_PIPELINE_CONSUMER_GROUP": group,
        "RTML_FEATURE_PIPELINE_CHECKPOINT_INTERVAL_S": str(checkpoint_interval_s),
        "RTML_FEATURE_PIPELINE_EXIT_WHEN_IDLE_S": str(exit_when_idle_s),
    }


def published_since_checkpoint(client: redis.Redis, kafka: KafkaSettings, group: str,
                               feature_set: FeatureSet = BASELINE) -> int:
    """Vectors on ``features`` after the positions the group's last checkpoint of
    ``feature_set`` recorded (0 before a checkpoint that applied anything)."""
    raw = client.get(checkpoint_key(group, feature_set.name, feature_set.version))
    if not raw:
        return 0
    checkpoint = Checkpoint.from_bytes(raw)  # type: ignore[arg-type]
    if checkpoint.events_applied == 0 or checkpoint.published is None:
        return 0
    since = {key: offset for key, offset in checkpoint.published.items()
             if key[0] == FEATURES_TOPIC}
    now = end_offsets(kafka, [FEATURES_TOPIC], near=since)
    return sum(now.values()) - sum(since.values())
