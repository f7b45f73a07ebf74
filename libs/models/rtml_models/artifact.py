"""The on-disk model artifact: the flavor's files plus a manifest that pins them.

Layout of an artifact directory::

    rtml-model.json   manifest: flavor, feature names, feature set and its
                      version, sha256 of every file, flavor facts
    model.ubj         (XGBoost) or river.pkl (River), ...
    calibration.json  only for a calibrated model: the map from raw scores to
                      probabilities (:mod:`rtml_models.calibration`); hashed
                      like the flavor's files, method and size in ``extra``

A calibrated artifact's manifest has format 2, so an rtml that predates
calibration refuses it instead of serving raw scores against thresholds set
for probabilities; an uncalibrated one keeps format 1 and loads anywhere.

Why a manifest of hashes: River models can only be stored by pickling, and
unpickling runs code. So nothing is deserialised until every file matches
the manifest, and the manifest itself matches a digest recorded elsewhere
(the registry keeps it as the version's ``rtml.artifact_digest`` tag when it
registers the version). A tampered or half-copied artifact is refused
before it is opened.

>>> import tempfile, numpy as np, xgboost as xgb
>>> from rtml_models.xgboost import XGBoostModel
>>> booster = xgb.train({"objective": "binary:logistic"},
...     xgb.DMatrix(np.eye(4), label=[0, 1, 0, 1], feature_names=list("abcd")), 2)
>>> with tempfile.TemporaryDirectory() as tmp:
...     manifest = save_model(XGBoostModel(booster), tmp, feature_set="demo",
...                           feature_set_version="v1")
...     model = load_model(tmp, expected_digest=manifest.digest)
>>> model.feature_names
('a', 'b', 'c', 'd')
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rtml_models.base import IntegrityError, ModelError, ScoringModel
from rtml_models.calibration import CALIBRATION_FILE, Calibration

MANIFEST_FILE = "rtml-model.json"
#: Newest manifest format this code reads and writes (2: may carry a calibration).
FORMAT_VERSION = 2
#: Format of manifests without a calibration: what every rtml reads.
UNCALIBRATED_FORMAT_VERSION = 1
#: The manifest ``extra`` key recording a calibration's method and size.
CALIBRATION_EXTRA = "calibration"


@dataclass(frozen=True)
class ModelManifest:
    """What an artifact holds and the sha256 of each of its files."""

    flavor: str
    feature_names: tuple[str, ...]
    feature_set: str
    feature_set_version: str
    files: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): the bytes the digest covers."""
        data = asdict(self)
        data["feature_names"] = list(self.feature_names)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        """sha256 of the canonical manifest; pins every file through their hashes."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> ModelManifest:
        """Parse a manifest, naming the field that is missing or wrong."""
        try:
            data = json.loads(text)
            manifest = cls(
                flavor=str(data["flavor"]),
                feature_names=tuple(str(n) for n in data["feature_names"]),
                feature_set=str(data["feature_set"]),
                feature_set_version=str(data["feature_set_version"]),
                files={str(k): str(v) for k, v in data["files"].items()},
                extra=dict(data.get("extra", {})),
                format_version=int(data["format_version"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"invalid {MANIFEST_FILE}: {exc!r}") from exc
        if manifest.format_version > FORMAT_VERSION:
            raise ModelError(
                f"{MANIFEST_FILE} has format {manifest.format_version}; this rtml reads "
                f"up to {FORMAT_VERSION}"
            )
        return manifest


def _flavors() -> dict[str, type[ScoringModel]]:
    """Flavor name -> class; imported lazily so a flavor's library loads only when used."""
    from rtml_models.river.model import RiverModel
    from rtml_models.xgboost.model import XGBoostModel

    return {cls.flavor: cls for cls in (XGBoostModel, RiverModel)}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (artifacts can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(model: ScoringModel, directory: str | Path, *, feature_set: str,
               feature_set_version: str) -> ModelManifest:
    """Write ``model`` and its manifest into ``directory`` (created if needed)."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    names = model.write(target)
    extra = model.describe()
    calibration = model.calibration
    if calibration is not None:
        if CALIBRATION_FILE in names or CALIBRATION_EXTRA in extra:
            raise ModelError(f"{model.flavor} model writes its own {CALIBRATION_FILE!r} or "
                             f"{CALIBRATION_EXTRA!r} fact; the artifact reserves them")
        (target / CALIBRATION_FILE).write_text(
            json.dumps(calibration.to_dict(), sort_keys=True, separators=(",", ":")))
        names = [*names, CALIBRATION_FILE]
        extra = {**extra, CALIBRATION_EXTRA: calibration.describe()}
    manifest = ModelManifest(
        flavor=model.flavor,
        feature_names=tuple(model.feature_names),
        feature_set=feature_set,
        feature_set_version=feature_set_version,
        files={name: file_sha256(target / name) for name in sorted(names)},
        extra=extra,
        format_version=FORMAT_VERSION if calibration is not None
        else UNCALIBRATED_FORMAT_VERSION,
    )
    (target / MANIFEST_FILE).write_text(manifest.to_json())
    return manifest


def read_manifest(directory: str | Path) -> ModelManifest:
    """The manifest of an artifact directory, or a ModelError saying what is missing."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise ModelError(f"{path} not found: not an rtml model artifact")
    return ModelManifest.from_json(path.read_text())


def verify(directory: str | Path, expected_digest: str | None) -> ModelManifest:
    """Check the manifest against ``expected_digest`` and every file against the manifest."""
    target = Path(directory)
    manifest = read_manifest(target)
    if expected_digest is not None and manifest.digest != expected_digest:
        raise IntegrityError(
            f"manifest digest {manifest.digest} differs from the recorded {expected_digest}"
        )
    for name, expected in manifest.files.items():
        path = target / name
        if Path(name).name != name or not path.is_file():
            raise IntegrityError(f"artifact file {name!r} listed in the manifest is missing")
        actual = file_sha256(path)
        if actual != expected:
            raise IntegrityError(f"{name}: sha256 {actual} differs from the manifest's {expected}")
    return manifest


def load_model(directory: str | Path, expected_digest: str | None) -> ScoringModel:
    """Verify, then load. ``expected_digest=None`` skips only the manifest pin.

    Flavors that deserialise code (River's pickle) refuse to load without a
    pin: the manifest in the same directory could have been rewritten along
    with the file.
    """
    manifest = verify(directory, expected_digest)
    flavors = _flavors()
    if manifest.flavor not in flavors:
        raise ModelError(f"unknown model flavor {manifest.flavor!r}; known: {sorted(flavors)}")
    cls = flavors[manifest.flavor]
    if expected_digest is None and getattr(cls, "requires_pinned_digest", False):
        raise IntegrityError(
            f"{manifest.flavor} artifacts execute code when loaded; pass the digest "
            "recorded by the registry"
        )
    calibration = read_calibration(Path(directory), manifest)
    model = cls.read(Path(directory), manifest.feature_names, manifest.extra)
    if tuple(model.feature_names) != manifest.feature_names:
        raise ModelError(
            f"model inputs {list(model.feature_names)} differ from the manifest's "
            f"{list(manifest.feature_names)}"
        )
    return model if calibration is None else model.with_calibration(calibration)


def read_calibration(directory: Path, manifest: ModelManifest) -> Calibration | None:
    """The verified artifact's calibration, None if it has none.

    Only a ``calibration.json`` listed in the manifest counts (a stray file is
    not covered by the hashes); the manifest's ``extra`` must describe the
    same map, so the recorded facts cannot disagree with what is served.
    """
    recorded = manifest.extra.get(CALIBRATION_EXTRA)
    if CALIBRATION_FILE not in manifest.files:
        if recorded is not None:
            raise ModelError(f"{MANIFEST_FILE} records a calibration {recorded} but lists no "
                             f"{CALIBRATION_FILE}")
        return None
    try:
        data = json.loads((directory / CALIBRATION_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{CALIBRATION_FILE} is not readable JSON: {exc}") from exc
    calibration = Calibration.from_dict(data)
    if recorded != calibration.describe():
        raise ModelError(f"{CALIBRATION_FILE} holds {calibration.describe()} but "
                         f"{MANIFEST_FILE} records {recorded}")
    return calibration
