"""Model parameters: the defaults written down, and parameter files a modeller hands in.

Why write XGBoost's defaults out instead of leaving them to the library:
XGBoost 2.0 changed what "the defaults" are (``tree_method`` became ``hist``
instead of ``exact``; ``base_score`` is now estimated from the labels instead
of 0.5), so a model trained with "the defaults" means different things on
different versions. :data:`XGBOOST_DEFAULTS` pins every parameter that
shapes the trees to the XGBoost 3.x values (the reference handbook's figures
were produced with XGBoost 1.x's ``exact`` method; see docs/training.md).
``base_score`` is left to XGBoost's estimate, which is what 3.x does.

A parameter file (``rtml train --params FILE``, YAML or JSON) is either a flat
mapping for the model being trained, or sections per model kind::

    xgboost:
      max_depth: 4
      n_estimators: 300
      learning_rate: 0.05
    river:
      learning_rate: 0.005

Unknown parameter names are refused with the file, line and the names
accepted, so a typo never trains a silently different model.

>>> xgboost_params({"max_depth": 4})["max_depth"], xgboost_params()["tree_method"]
(4, 'hist')
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtml_common import strict_yaml

#: Every tree-shaping XGBoost parameter at its XGBoost 3.x default, plus a fixed seed
#: and two threads (the cores of the development machine).
XGBOOST_DEFAULTS: dict[str, Any] = {
    "n_estimators": 100,
    "max_depth": 6,
    "learning_rate": 0.3,
    "min_child_weight": 1.0,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "colsample_bylevel": 1.0,
    "colsample_bynode": 1.0,
    "reg_lambda": 1.0,
    "reg_alpha": 0.0,
    "gamma": 0.0,
    "max_delta_step": 0.0,
    "scale_pos_weight": 1.0,
    "tree_method": "hist",
    "max_bin": 256,
    "grow_policy": "depthwise",
    "objective": "binary:logistic",
    "random_state": 0,
    "n_jobs": 2,
}

#: The online model's parameters (a standardised logistic regression, SGD): the values of
#: :func:`rtml_models.river.default_online_model`.
RIVER_DEFAULTS: dict[str, Any] = {"learning_rate": 0.01, "l2": 0.0, "intercept_lr": 0.01}


class ParamsError(ValueError):
    """A parameter file or value is not acceptable; the message names file, line and key."""


def _xgboost_names() -> frozenset[str]:
    import xgboost as xgb  # ~0.3 s: only when a file is checked

    return frozenset(xgb.XGBClassifier().get_params()) | frozenset(XGBOOST_DEFAULTS)


def accepted_names(kind: str) -> frozenset[str]:
    """Parameter names a model kind accepts."""
    if kind == "xgboost":
        return _xgboost_names() - {"callbacks", "early_stopping_rounds", "eval_metric"}
    if kind == "river":
        return frozenset(RIVER_DEFAULTS)
    raise ParamsError(f"no parameters are known for model kind {kind!r}")


def xgboost_params(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parameters an XGBoost fit uses: :data:`XGBOOST_DEFAULTS` updated with ``overrides``."""
    return {**XGBOOST_DEFAULTS, **(overrides or {})}


def river_params(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The online model's parameters: :data:`RIVER_DEFAULTS` updated with ``overrides``."""
    return {**RIVER_DEFAULTS, **(overrides or {})}


@dataclass(frozen=True)
class ParamsFile:
    """Parameters read from a file, per model kind (a flat file fills ``default_kind``)."""

    path: Path
    by_kind: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def for_kind(self, kind: str) -> dict[str, Any]:
        return dict(self.by_kind.get(kind, {}))


def _check_value(where: str, key: str, value: object) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParamsError(f"{where}: {key} must be finite, not {value!r}")
        return
    raise ParamsError(f"{where}: {key} must be a number, string, boolean or null, "
                      f"not {type(value).__name__}")


def _check_section(path: Path, kind: str, section: object) -> dict[str, Any]:
    line = strict_yaml.line_of(section)
    where = f"{path}:{line}" if line else str(path)
    if not isinstance(section, dict):
        raise ParamsError(f"{where}: the {kind} parameters must be a mapping of name: value")
    accepted = accepted_names(kind)
    unknown = sorted(set(section) - accepted)
    if unknown:
        raise ParamsError(f"{where}: unknown {kind} parameter(s) {unknown}; accepted: "
                          f"{', '.join(sorted(accepted))}")
    for key, value in section.items():
        _check_value(where, key, value)
    return dict(section)


def load_params_file(path: Path, default_kind: str = "xgboost") -> ParamsFile:
    """Read and check a YAML or JSON parameter file (see the module doc).

    A file whose top-level keys are all model kinds (``xgboost``, ``river``) is
    read as sections; any other mapping is the parameters of ``default_kind``.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ParamsError(f"cannot read parameter file {path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text) if Path(path).suffix == ".json" else strict_yaml.load(text)
    except (strict_yaml.YamlError, json.JSONDecodeError) as exc:
        raise ParamsError(f"{path}: {exc}") from None
    if doc is None:
        return ParamsFile(Path(path))
    if not isinstance(doc, dict):
        raise ParamsError(f"{path}: a parameter file is a mapping (name: value, or sections "
                          "xgboost: / river:)")
    kinds = ("xgboost", "river")
    if doc and all(key in kinds for key in doc):
        sections = {kind: _check_section(Path(path), kind, doc[kind]) for kind in doc}
    else:
        sections = {default_kind: _check_section(Path(path), default_kind, doc)}
    return ParamsFile(Path(path), sections)
