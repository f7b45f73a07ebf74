"""Reference distributions of the training data, for the drift monitor.

Drift is measured by comparing live feature values (and model scores) with
what the model was trained on. The monitor cannot keep the training set, so
training stores, per feature and for the score, a binned summary: bin edges,
the training counts and proportions per bin, plus n, mean, min and max.

Binning (the contract the drift monitor relies on):

* ``edges`` are the *inner* cut points, strictly increasing. ``len(edges) + 1``
  bins: bin 0 is ``(-inf, edges[0]]``, bin ``i`` is ``(edges[i-1], edges[i]]``,
  the last is ``(edges[-1], +inf)``. The outer bins are open, so every live
  value, however far outside the training range, falls in a bin.
  Bins are closed on the right (``numpy.searchsorted(edges, x, side="left")``)
  so a point mass sitting on a quantile, e.g. the zeros of a terminal risk
  feature, stays in one bin below the next cut.
* ``quantile`` binning (the default): cut points at the training quantiles
  ``1/b, 2/b, ..., (b-1)/b`` for ``b`` bins, duplicates removed, so a skewed
  feature gets fewer, well-filled bins rather than empty ones.
* ``distinct`` binning: a feature with at most ``b`` distinct training values
  (binary flags, near-constant features) gets one bin per value, cut at the
  midpoints between consecutive values (``values`` lists them); a live value
  falls in the bin of the nearest training value.
* ``categorical`` binning (:func:`describe_categorical`, for a feature declared
  as a categorical field's code, ``RowKind.CATEGORY_CODE``): one bin per
  *declared* category plus one for "absent" (code -1), whether or not training
  saw it — a category that appears only live is a shift in the category
  frequencies, not a value to fold into its numeric neighbour. ``values`` lists
  the codes, ``categories`` their names. The drift monitor measures these
  subjects with the Jensen-Shannon divergence of the category frequencies
  (bounded by ln 2, finite for categories unseen on one side) instead of PSI.
* NaN is not expected (features are never NaN); numpy sorts it last, so it
  would land in the last bin.

>>> d = describe_categorical([0, 0, 1, -1], ["web", "app", "pos"])
>>> d.binning, d.counts, d.values
('categorical', (1, 2, 1, 0), (-1.0, 0.0, 1.0, 2.0))
>>> d.histogram([2, 2, 0]).tolist()  # "pos", never seen in training, has its own bin
[0, 1, 0, 2]
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

FORMAT_VERSION = 1
DEFAULT_BINS = 10
#: Name of the model-score distribution in :class:`ReferenceDistributions`.
SCORE = "score"

Binning = Literal["quantile", "distinct", "categorical"]
#: The code of an event without the categorical field (``RowKind.CATEGORY_CODE``).
ABSENT_CODE = -1


@dataclass(frozen=True)
class Distribution:
    """Binned summary of one variable over the training frame (see module doc)."""

    binning: Binning
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    proportions: tuple[float, ...]
    n: int
    mean: float
    min: float
    max: float
    #: The value of each bin (``distinct``: the training values; ``categorical``: the codes).
    values: tuple[float, ...] = ()
    #: The category name of each code (``categorical`` only; bin 0 is "absent").
    categories: tuple[str, ...] = ()

    @property
    def categorical(self) -> bool:
        return self.binning == "categorical"

    def bin_index(self, values: npt.ArrayLike) -> npt.NDArray[np.intp]:
        """Bin of each value (0 .. len(edges)); out-of-range values go to the outer bins."""
        return np.searchsorted(np.asarray(self.edges, dtype=np.float64),
                               np.asarray(values, dtype=np.float64), side="left")

    def histogram(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Counts of ``values`` in this distribution's bins."""
        return np.bincount(self.bin_index(values), minlength=len(self.edges) + 1).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Distribution:
        return cls(
            binning=data["binning"],
            edges=tuple(float(e) for e in data["edges"]),
            counts=tuple(int(c) for c in data["counts"]),
            proportions=tuple(float(p) for p in data["proportions"]),
            n=int(data["n"]), mean=float(data["mean"]),
            min=float(data["min"]), max=float(data["max"]),
            values=tuple(float(v) for v in data.get("values", ())),
            categories=tuple(str(c) for c in data.get("categories", ())),
        )


def describe(values: npt.ArrayLike, bins: int = DEFAULT_BINS) -> Distribution:
    """The binned summary of ``values`` (see the module doc for the binning rules)."""
    if bins < 2:
        raise ValueError("bins must be >= 2")
    data = np.asarray(values, dtype=np.float64)
    data = data[~np.isnan(data)]
    if not len(data):
        raise ValueError("no values to describe")
    distinct = np.unique(data)
    binning: Binning
    if len(distinct) <= bins:
        binning = "distinct"
        edges = (distinct[:-1] + distinct[1:]) / 2
    else:
        binning = "quantile"
        quantiles = np.quantile(data, np.arange(1, bins) / bins)
        # The top quantile can equal the maximum; a cut there would leave the last bin empty.
        edges = np.unique(quantiles[quantiles < distinct[-1]])
    counts = np.bincount(np.searchsorted(edges, data, side="left"), minlength=len(edges) + 1)
    return Distribution(
        binning=binning,
        edges=tuple(float(e) for e in edges),
        counts=tuple(int(c) for c in counts),
        proportions=tuple(float(c) / len(data) for c in counts),
        n=len(data), mean=float(data.mean()), min=float(data.min()), max=float(data.max()),
        values=tuple(float(v) for v in distinct) if binning == "distinct" else (),
    )


def describe_categorical(codes: npt.ArrayLike, categories: Sequence[str]) -> Distribution:
    """The category frequencies of ``codes`` (index in ``categories``, -1 absent).

    One bin per declared category and one for absent (see the module doc); a code
    outside ``-1 .. len(categories) - 1`` is refused (the engines never produce one).
    """
    if not categories:
        raise ValueError("a categorical distribution needs its declared categories")
    data = np.asarray(codes, dtype=np.float64)
    if not len(data):
        raise ValueError("no values to describe")
    codes_declared = np.arange(ABSENT_CODE, len(categories), dtype=np.float64)
    if not np.isin(data, codes_declared).all():
        raise ValueError(f"category codes must be integers in {ABSENT_CODE}.."
                         f"{len(categories) - 1}")
    edges = (codes_declared[:-1] + codes_declared[1:]) / 2
    counts = np.bincount(np.searchsorted(edges, data, side="left"), minlength=len(edges) + 1)
    return Distribution(
        binning="categorical",
        edges=tuple(float(e) for e in edges),
        counts=tuple(int(c) for c in counts),
        proportions=tuple(float(c) / len(data) for c in counts),
        n=len(data), mean=float(data.mean()), min=float(data.min()), max=float(data.max()),
        values=tuple(float(v) for v in codes_declared), categories=tuple(categories),
    )


@dataclass(frozen=True)
class ReferenceDistributions:
    """Per-feature and score distributions of a training run (``reference/distributions.json``)."""

    features: dict[str, Distribution]
    score: Distribution | None = None
    feature_set: str = ""
    feature_set_version: str = ""
    bins: int = DEFAULT_BINS
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "binning": ("edges are inner cut points; bins (-inf, e0], (e0, e1], ..., "
                        "(e_last, +inf); quantile, distinct-value or per-category cuts"),
            "feature_set": self.feature_set,
            "feature_set_version": self.feature_set_version,
            "bins": self.bins,
            "metadata": self.metadata,
            "features": {name: dist.to_dict() for name, dist in self.features.items()},
            SCORE: self.score.to_dict() if self.score is not None else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceDistributions:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported reference format_version {version!r}")
        score = data.get(SCORE)
        return cls(
            features={name: Distribution.from_dict(d) for name, d in data["features"].items()},
            score=Distribution.from_dict(score) if score is not None else None,
            feature_set=str(data.get("feature_set", "")),
            feature_set_version=str(data.get("feature_set_version", "")),
            bins=int(data.get("bins", DEFAULT_BINS)),
            metadata=dict(data.get("metadata", {})),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ReferenceDistributions:
        return cls.from_dict(json.loads(text))


def build_reference(frame: pd.DataFrame, feature_names: Iterable[str],
                    scores: npt.ArrayLike | None = None, *, bins: int = DEFAULT_BINS,
                    feature_set: str = "", feature_set_version: str = "",
                    metadata: Mapping[str, Any] | None = None,
                    categorical: Mapping[str, Sequence[str]] | None = None,
                    ) -> ReferenceDistributions:
    """Distributions of ``frame``'s feature columns (and of ``scores``, if given).

    ``categorical``: feature name -> its field's declared categories, for the features
    that are category codes (binned per category, see the module doc).
    """
    categories = dict(categorical or {})
    features = {name: (describe_categorical(frame[name].to_numpy(dtype=np.float64),
                                            categories[name])
                       if name in categories
                       else describe(frame[name].to_numpy(dtype=np.float64), bins))
                for name in feature_names}
    extra = dict(metadata or {})
    for key, value in extra.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"metadata {key!r} is not finite")
    return ReferenceDistributions(
        features=features,
        score=describe(scores, bins) if scores is not None else None,
        feature_set=feature_set, feature_set_version=feature_set_version, bins=bins,
        metadata=extra,
    )
