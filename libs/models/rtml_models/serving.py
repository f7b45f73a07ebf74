"""The models a serving process scores with, kept in step with the registry's aliases.

Scorers and the decision service both need "the champion and the shadows of
model X, loaded, verified, and swapped in when an alias moves". They share
this module so they can't disagree on what an alias means or how a version
is loaded.

Why snapshots: a scoring loop takes :attr:`ServingModels.current` once per
batch or request and uses that object throughout, so a reload in between
never mixes versions within a batch, and every output can name the version
that produced it. :meth:`ServingModels.refresh` loads any new version
*before* publishing the new snapshot: the swap itself is one attribute
assignment, and a version that fails to load leaves the old snapshot serving.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from rtml_common.events import ModelEvent
from rtml_models.aliases import CHAMPION, is_shadow_alias
from rtml_models.base import ScoringModel
from rtml_models.registry.base import ModelRegistry, ModelVersion, NotFoundError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """A loaded version and the alias it serves under."""

    alias: str
    info: ModelVersion
    model: ScoringModel

    @property
    def version(self) -> str:
        return self.info.version


@dataclass(frozen=True)
class Snapshot:
    """The models of one registered model name at one moment (immutable)."""

    name: str
    champion: ServedModel | None = None
    shadows: dict[str, ServedModel] = field(default_factory=dict)

    def describe(self) -> dict[str, str]:
        """Alias -> version, for logs and health endpoints."""
        served = dict(self.shadows)
        if self.champion is not None:
            served[CHAMPION] = self.champion
        return {alias: m.version for alias, m in sorted(served.items())}


class ServingModels:
    """Champion and shadow models of ``name``, loaded from ``registry``.

    ``with_shadows=False`` skips loading shadows (e.g. a decision replica that
    leaves shadow scoring to the scorer).
    """

    def __init__(self, registry: ModelRegistry, name: str, *, with_shadows: bool = True,
                 workdir: Path | None = None) -> None:
        self.registry = registry
        self.name = name
        self.with_shadows = with_shadows
        self._workdir = workdir or Path(tempfile.mkdtemp(prefix="rtml-serving-"))
        self._loaded: dict[str, ScoringModel] = {}
        self._lock = threading.Lock()
        self.current = Snapshot(name)

    def _load(self, info: ModelVersion) -> ScoringModel:
        model = self._loaded.get(info.version)
        if model is None:
            model = self.registry.load(self.name, info.version,
                                       self._workdir / f"v{info.version}")
            self._loaded[info.version] = model
        return model

    def refresh(self) -> Snapshot:
        """Re-read the aliases, load what changed, then swap the snapshot in one step."""
        with self._lock:
            try:
                aliases = self.registry.aliases(self.name)
            except NotFoundError:
                aliases = {}
            wanted = {alias: version for alias, version in aliases.items()
                      if alias == CHAMPION or (self.with_shadows and is_shadow_alias(alias))}
            served: dict[str, ServedModel] = {}
            for alias, version in sorted(wanted.items()):
                info = self.registry.get_version(self.name, version)
                served[alias] = ServedModel(alias, info, self._load(info))
            snapshot = Snapshot(
                name=self.name,
                champion=served.pop(CHAMPION, None),
                shadows=served,
            )
            in_use = {m.version for m in [snapshot.champion, *snapshot.shadows.values()] if m}
            self._loaded = {v: m for v, m in self._loaded.items() if v in in_use}
            if snapshot.describe() != self.current.describe():
                logger.info("serving %s: %s (was %s)", self.name, snapshot.describe(),
                            self.current.describe())
            self.current = snapshot
            return snapshot

    def on_model_event(self, event: ModelEvent) -> bool:
        """Refresh if ``event`` concerns this model; True if the snapshot changed."""
        if event.model_name != self.name:
            return False
        before = self.current.describe()
        return self.refresh().describe() != before
