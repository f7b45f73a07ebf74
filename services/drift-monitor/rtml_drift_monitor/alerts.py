"""From PSI values to alerts: thresholds per subject, hysteresis, stable ids, retrain cooldown.

* **Thresholds** (:class:`Thresholds`): a global PSI threshold, per-subject
  overrides for every window kind, and overrides for tumbling windows only.
  ``None`` means "measured, exported as a metric, never alerted": for a
  feature whose distribution is a function of the clock on short windows
  (the weekend flag on a one-day window).
* **Hysteresis** (:class:`Hysteresis`, one per window kind and subject): an
  alert is *raised* after ``raise_after`` consecutive evaluated windows with
  PSI above the threshold (1 = the first such window; the platform promises a
  drift alert within one window) and *cleared* after ``clear_after``
  consecutive windows below ``clear_ratio * threshold``. While raised, further
  drifting windows publish nothing (one alert per episode); values between
  the two thresholds keep the current state, so a PSI hovering around the
  threshold does not flap. Windows that are not evaluated (partial, too few
  events) neither extend nor break a streak.
* **Ids** (:func:`alert_id`, :func:`request_id`): hashes of what the alert is
  about (model, version, window kind, subject, window bounds), so a replay
  after a crash publishes the same alert again with the same id, which
  consumers dedupe, instead of a second alert.
* **Retrain cooldown** (:class:`RetrainPlanner`): measured in event time
  between the ends of the windows that triggered two requests, so a fast
  replay of months of data behaves like the same months in real time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from rtml_drift_monitor.windows import Window, WindowKind


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


def alert_id(model_name: str, model_version: str, window: Window, subject: str) -> str:
    """Deterministic id of the alert for ``subject`` in ``window`` against that model version."""
    return _digest("drift", model_name, model_version, window.kind.value, subject,
                   window.start_ms, window.end_ms)


def request_id(model_name: str, model_version: str, window_end_ms: int) -> str:
    """Deterministic id of the retrain request triggered by windows ending at ``window_end_ms``."""
    return _digest("retrain", model_name, model_version, window_end_ms)


#: Jensen-Shannon divergence (nats) above which a categorical feature's category
#: frequencies drift: about what PSI 0.2 is for numbers (for small shifts JS ~ PSI / 8),
#: e.g. one category of 4 going from 25 % to 45 % of events (JS 0.022).
DEFAULT_JS_THRESHOLD = 0.02


@dataclass(frozen=True)
class Thresholds:
    """Alert threshold per (window kind, subject), in the subject's metric; ``None`` = not alerted.

    Numeric subjects alert on PSI (``default``), categorical ones (category-code features)
    on the Jensen-Shannon divergence of their category frequencies (``categorical``). A
    per-subject override is in that subject's metric.
    """

    default: float
    per_subject: Mapping[str, float | None] = field(default_factory=dict)
    tumbling: Mapping[str, float | None] = field(default_factory=dict)
    categorical: float = DEFAULT_JS_THRESHOLD

    def for_subject(self, kind: WindowKind, subject: str,
                    categorical: bool = False) -> float | None:
        if kind is WindowKind.TUMBLING and subject in self.tumbling:
            return self.tumbling[subject]
        if subject in self.per_subject:
            return self.per_subject[subject]
        return self.categorical if categorical else self.default


@dataclass(frozen=True)
class HysteresisRule:
    """How many windows confirm a drift and how far back it must come to clear."""

    raise_after: int = 1
    clear_after: int = 3
    clear_ratio: float = 0.5

    def __post_init__(self) -> None:
        if self.raise_after < 1 or self.clear_after < 1 or not 0 < self.clear_ratio <= 1:
            raise ValueError("need raise_after >= 1, clear_after >= 1, 0 < clear_ratio <= 1")


class Transition(StrEnum):
    """What one window did to a subject's alert state."""

    NONE = "none"
    RAISED = "raised"
    CLEARED = "cleared"


@dataclass
class Hysteresis:
    """Alert state of one (window kind, subject) (see the module doc)."""

    rule: HysteresisRule
    raised: bool = False
    over: int = 0
    under: int = 0

    def update(self, value: float, threshold: float) -> Transition:
        """Feed one evaluated window's PSI; return the :class:`Transition`."""
        if not self.raised:
            self.over = self.over + 1 if value > threshold else 0
            if self.over >= self.rule.raise_after:
                self.raised, self.over, self.under = True, 0, 0
                return Transition.RAISED
            return Transition.NONE
        self.under = self.under + 1 if value < self.rule.clear_ratio * threshold else 0
        if self.under >= self.rule.clear_after:
            self.raised, self.over, self.under = False, 0, 0
            return Transition.CLEARED
        return Transition.NONE


@dataclass
class RetrainPlanner:
    """Decides whether alerts raised by windows ending at one time lead to a retrain request.

    State (the last request's window end) is kept across reference reloads:
    the cooldown is per model name, not per version.
    """

    enabled: bool
    cooldown_ms: int
    lookback_ms: int
    last_request_end_ms: int | None = None

    def due(self, window_end_ms: int) -> bool:
        """Whether a request for alerts at ``window_end_ms`` is allowed; records it if so."""
        if not self.enabled:
            return False
        if (self.last_request_end_ms is not None
                and window_end_ms - self.last_request_end_ms < self.cooldown_ms):
            return False
        self.last_request_end_ms = window_end_ms
        return True
