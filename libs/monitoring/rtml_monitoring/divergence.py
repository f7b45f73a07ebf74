"""Divergences between a reference and a live binned distribution.

All three functions take *counts* per bin (the same bins on both sides, e.g.
``Distribution.counts`` and ``Distribution.histogram(live_values)`` from
:mod:`rtml_monitoring.reference`) and return a float >= 0.

Smoothing (why: a bin empty on one side makes PSI and KL infinite, and one
empty bin in a window of a few thousand events is noise, not drift): each
side's proportions are computed from ``counts + alpha`` with
``alpha = DEFAULT_ALPHA = 0.5`` per bin (the Jeffreys / Krichevsky-Trofimov
pseudo-count), i.e. ``p_i = (c_i + alpha) / (n + alpha * bins)``. With large
counts the effect vanishes; with ``alpha=0`` the textbook values are returned
(infinite when a reference bin is empty and the live one is not).

* PSI (population stability index): ``sum((q - p) * ln(q / p))``, i.e.
  ``KL(q||p) + KL(p||q)``; symmetric. Rule of thumb: < 0.1 stable, 0.1-0.25
  moderate, > 0.25 major shift.
* KL: ``KL(live || reference) = sum(q * ln(q / p))`` in nats — how surprising
  the live window is under the reference.
* JS (Jensen-Shannon divergence): ``(KL(p||m) + KL(q||m)) / 2`` with
  ``m = (p + q) / 2``, in nats; symmetric, bounded by ``ln 2``, finite even
  without smoothing.

>>> round(psi([50, 50], [50, 50]), 6)
0.0
>>> round(psi([500, 500], [900, 100]), 4)
0.8762
>>> round(kl([500, 500], [900, 100]), 4)
0.3672
>>> round(js([500, 500], [900, 100]), 4)
0.1015
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: Pseudo-count added to every bin on both sides before taking proportions.
DEFAULT_ALPHA = 0.5


def proportions(counts: npt.ArrayLike, alpha: float = DEFAULT_ALPHA) -> npt.NDArray[np.float64]:
    """Smoothed proportions ``(c + alpha) / (n + alpha * bins)`` (see the module doc)."""
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or len(c) < 1:
        raise ValueError("counts must be a non-empty 1-d sequence")
    if np.any(c < 0) or not np.all(np.isfinite(c)):
        raise ValueError("counts must be finite and >= 0")
    if alpha < 0:
        raise ValueError("alpha must be >= 0")
    total = c.sum() + alpha * len(c)
    if total <= 0:
        raise ValueError("counts are all zero (and alpha is 0): no distribution")
    return (c + alpha) / total


def _pair(reference: npt.ArrayLike, live: npt.ArrayLike,
          alpha: float) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    p, q = proportions(reference, alpha), proportions(live, alpha)
    if len(p) != len(q):
        raise ValueError(f"bin counts differ: reference has {len(p)} bins, live {len(q)}")
    return p, q


def _kl(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """``sum(a * ln(a / b))`` with ``0 * ln 0 = 0`` and ``a > 0, b = 0 -> inf``."""
    mask = a > 0
    if np.any(b[mask] == 0):
        return float("inf")
    return float(np.sum(a[mask] * np.log(a[mask] / b[mask])))


def psi(reference: npt.ArrayLike, live: npt.ArrayLike, alpha: float = DEFAULT_ALPHA) -> float:
    """Population stability index of ``live`` against ``reference`` (counts per bin)."""
    p, q = _pair(reference, live, alpha)
    return max(_kl(q, p) + _kl(p, q), 0.0)


def kl(reference: npt.ArrayLike, live: npt.ArrayLike, alpha: float = DEFAULT_ALPHA) -> float:
    """``KL(live || reference)`` in nats (counts per bin)."""
    p, q = _pair(reference, live, alpha)
    return max(_kl(q, p), 0.0)


def js(reference: npt.ArrayLike, live: npt.ArrayLike, alpha: float = DEFAULT_ALPHA) -> float:
    """Jensen-Shannon divergence in nats (counts per bin); at most ``ln 2``."""
    p, q = _pair(reference, live, alpha)
    m = (p + q) / 2
    return max((_kl(p, m) + _kl(q, m)) / 2, 0.0)
