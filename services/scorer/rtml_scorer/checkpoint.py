"""Online-model checkpoints: the learned state registered as a new version, with lineage.

Every ``interval_s`` (and on shutdown) each served online model that has
learned since its last checkpoint is copied on the scoring thread (a deep
copy: River models are small, and copying is what keeps learning and
pickling from racing) and registered in the background as a new version of
the same model name, with ``parent_version`` = the version it continued from
(the served version, then its own previous checkpoint) — so the registry
holds the model's whole learning history.

Aliases are **not** moved: promoting a checkpoint is the registry service's
decision (validation gate, audit log). A checkpoint is the state to resume
from or to promote; until then the served alias still names the version
the scorer loaded, and that is the version its outputs carry.
"""

from __future__ import annotations

import copy
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from rtml_features.baseline import get_feature_set
from rtml_models.base import OnlineModel
from rtml_models.registry.base import ModelRegistry
from rtml_models.serving import ServedModel

logger = logging.getLogger(__name__)

#: Tags written on every checkpoint version besides the registry's own lineage tags.
TAG_CHECKPOINT_OF = "rtml.checkpoint_of"
TAG_UPDATES = "rtml.online_updates"


@dataclass
class _Lineage:
    parent: str
    updates: int


class Checkpointer:
    """Registers online models' state periodically; see the module docstring."""

    def __init__(self, registry: ModelRegistry, model_name: str, interval_s: float,
                 instance: str) -> None:
        self.registry = registry
        self.model_name = model_name
        self.interval_s = interval_s
        self.instance = instance
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        #: Per (alias, served version): the newest registered checkpoint (written and read
        #: only on the one background thread, so checkpoints chain in order).
        self._lineage: dict[tuple[str, str], _Lineage] = {}
        self._submitted: dict[tuple[str, str], int] = {}
        self._last = time.monotonic()
        self._pending: list[Future[str | None]] = []
        self.registered: list[str] = []
        self.failed = 0

    def due(self) -> bool:
        return self.interval_s > 0 and time.monotonic() - self._last >= self.interval_s

    def checkpoint(self, served: list[ServedModel]) -> list[Future[str | None]]:
        """Copy each online model that learned since its last checkpoint; register in background."""
        self._last = time.monotonic()
        futures = []
        for model in served:
            if not isinstance(model.model, OnlineModel):
                continue
            key = (model.alias, model.version)
            updates = model.model.updates
            if updates <= self._submitted.get(key, 0):
                continue
            self._submitted[key] = updates
            state = copy.deepcopy(model.model)
            future = self._executor.submit(self._register, model, state, updates)
            futures.append(future)
        self._pending = [f for f in [*self._pending, *futures] if not f.done()]
        return futures

    def _register(self, served: ServedModel, state: OnlineModel, updates: int) -> str | None:
        key = (served.alias, served.version)
        parent = self._lineage.get(key, _Lineage(served.version, 0)).parent
        try:
            feature_set = get_feature_set(served.info.feature_set or "")
            if feature_set.version != served.info.feature_set_version:
                raise ValueError(
                    f"feature set {feature_set.name} is at {feature_set.version}, the model "
                    f"was registered with {served.info.feature_set_version}")
            version = self.registry.register(
                self.model_name, state, feature_set=feature_set, parent_version=parent,
                tags={TAG_CHECKPOINT_OF: f"{served.alias}@{served.version}",
                      TAG_UPDATES: str(updates), "rtml.scorer_instance": self.instance},
                description=f"online checkpoint of {served.alias} (v{served.version}) after "
                            f"{updates} updates")
        except Exception as exc:  # a registry outage must not stop scoring
            self.failed += 1
            logger.warning("checkpoint of %s v%s failed: %r", served.alias, served.version, exc)
            return None
        self._lineage[key] = _Lineage(version.version, updates)
        self.registered.append(version.version)
        logger.info("checkpointed %s v%s after %d updates as v%s (parent v%s)", served.alias,
                    served.version, updates, version.version, parent)
        return version.version

    def close(self, timeout_s: float = 60.0) -> None:
        """Wait for checkpoints in flight, then stop the background thread."""
        for future in self._pending:
            future.result(timeout=timeout_s)
        self._executor.shutdown(wait=True)
