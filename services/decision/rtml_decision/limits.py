"""The bounds every request is held to: body sizes, event-time plausibility, validation time.

One frozen value built from :class:`~rtml_decision.config.Settings`, so the
API, the fast path and the rule validator read the same numbers and tests
can pass small ones without environment variables.
"""

from __future__ import annotations

from dataclasses import dataclass

from rtml_decision.config import Settings


@dataclass(frozen=True, slots=True)
class Limits:
    """Request bounds (see the ``RTML_DECISION_*`` variables of the same names)."""

    max_request_bytes: int = 16_384
    rules_max_bytes: int = 1_000_000
    rules_validation_timeout_s: float = 30.0
    backtest_timeout_s: float = 300.0
    max_future_skew_s: float = 300.0
    max_event_age_s: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(max_request_bytes=settings.max_request_bytes,
                   rules_max_bytes=settings.rules_max_bytes,
                   rules_validation_timeout_s=settings.rules_validation_timeout_s,
                   backtest_timeout_s=settings.backtest_timeout_s,
                   max_future_skew_s=settings.max_future_skew_s,
                   max_event_age_s=settings.max_event_age_s)

    def event_time_error(self, event_time: float, now: float) -> str | None:
        """Why ``event_time`` (epoch seconds) is implausible at ``now``, or None.

        A time far ahead of the clock would be published to ``transactions``
        and hold the customer's and terminal's features at that future time;
        far behind it is accepted unless ``max_event_age_s`` is set (replays,
        benchmarks and the simulator send 2018 times).
        """
        ahead = event_time - now
        if ahead > self.max_future_skew_s:
            return (f"event_time is {ahead:,.0f} s ahead of the service clock; at most "
                    f"{self.max_future_skew_s:,.0f} s ahead is accepted "
                    "(RTML_DECISION_MAX_FUTURE_SKEW_S)")
        if self.max_event_age_s is not None and -ahead > self.max_event_age_s:
            return (f"event_time is {-ahead:,.0f} s behind the service clock; at most "
                    f"{self.max_event_age_s:,.0f} s behind is accepted "
                    "(RTML_DECISION_MAX_EVENT_AGE_S)")
        return None
