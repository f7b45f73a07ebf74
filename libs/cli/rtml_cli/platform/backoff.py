"""When to restart a service that died: exponential backoff, forgiven after a healthy spell.

A service that crashes at start (Cassandra not up yet, a bad variable) would
otherwise be restarted in a tight loop, filling its log and taking the CPU
the others need; one that crashed once after a day of work should come back
at once. So the delay doubles with each consecutive failure up to a cap,
and the count of consecutive failures resets once the service has been
healthy for ``reset_after_s``. Pure: every method takes the time as an
argument, so the policy is tested without sleeping.

>>> policy = BackoffPolicy()
>>> [policy.delay(n) for n in range(1, 8)]
[1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    """Restart delays: 1 s doubling to 30 s, reset after a minute healthy."""

    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 30.0
    #: Healthy this long without a crash and the failure count starts again at 0.
    reset_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.factor < 1 or self.max_s < self.initial_s:
            raise ValueError("backoff needs initial_s > 0, factor >= 1, max_s >= initial_s")
        if self.reset_after_s <= 0:
            raise ValueError("backoff needs reset_after_s > 0")

    def delay(self, failures: int) -> float:
        """Seconds to wait before the restart that follows the ``failures``-th consecutive exit."""
        if failures < 1:
            raise ValueError(f"failures must be >= 1, got {failures}")
        # Capped before the power can overflow a float on a long crash loop.
        exponent = min(failures - 1, 64)
        return float(min(self.max_s, self.initial_s * self.factor ** exponent))


@dataclass
class RestartTracker:
    """One service's consecutive failures and when it became healthy."""

    policy: BackoffPolicy
    failures: int = 0
    healthy_since: float | None = None

    def on_healthy(self, now: float) -> None:
        """The service answered its health check at ``now``."""
        if self.healthy_since is None:
            self.healthy_since = now
        elif self.failures and now - self.healthy_since >= self.policy.reset_after_s:
            self.failures = 0

    def on_unhealthy(self) -> None:
        """Alive but not answering: the healthy spell is over (no restart for that)."""
        self.healthy_since = None

    def on_exit(self, now: float) -> float:
        """The service exited at ``now``; returns when (monotonic) to restart it."""
        if self.healthy_since is not None and now - self.healthy_since >= self.policy.reset_after_s:
            self.failures = 0
        self.healthy_since = None
        self.failures += 1
        return now + self.policy.delay(self.failures)
