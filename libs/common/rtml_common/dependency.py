"""Waiting out a dependency's outage instead of blaming the record.

A consumer's handler fails for two unrelated reasons. Either the record is
bad (retrying cannot fix it: after bounded retries it is dead-lettered with
the reason), or something the handler needs — Redis, Cassandra, MLflow, a
file server — is down or timing out. The second is not a property of the
record: dead-lettering then loses *valid* records (a Redis outage of a few
seconds used to push transactions and labels to their DLQs). So an outage is
waited out: retried without a bound, with capped exponential backoff, until
the dependency answers or the consumer is stopped; nothing is dead-lettered
and no offset moves past the held records.

What counts as an outage (:func:`is_outage`) is one explicit list,
:data:`OUTAGE_ERRORS`: the builtin :class:`ConnectionError` (refused, reset,
broken pipe) and :class:`TimeoutError`, redis-py's ``ConnectionError`` and
``TimeoutError`` (which do not derive from the builtins), and
:class:`DependencyUnavailable`, which a service raises — usually ``raise
DependencyUnavailable("decision log") from error`` — for its own client's
errors (a Cassandra driver's, an HTTP client's) once it has decided they mean
"unavailable", not "this input is refused".

:class:`DependencyWait` is the waiting itself, shared by
:class:`~rtml_common.kafka.consumer.ConsumerLoop` (handler and idle hook) and
anything else that must wait (it is not tied to Kafka): one warning when an
outage starts, one info line with the number of attempts and the duration
when it ends, a ``rtml_dependency_waiting`` gauge (1 while waiting) and a
``rtml_dependency_outage_attempts`` counter. A stop requested during the wait
raises :class:`StoppedWaiting`, a ``BaseException`` so that no ``except
Exception`` in between mistakes it for a failure: the work in hand is
abandoned uncommitted and replayed by the next run (at-least-once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from opentelemetry import metrics

logger = logging.getLogger(__name__)

T = TypeVar("T")


class DependencyUnavailable(Exception):
    """A dependency the handler needs is down or timing out: wait, never dead-letter.

    Raise it (``from`` the client's own error) for failures :data:`OUTAGE_ERRORS`
    does not already cover, e.g. a database driver's "no host available".
    """


class StoppedWaiting(BaseException):
    """A stop was requested while waiting for a dependency: leave the work uncommitted."""


#: Handler errors that mean "a dependency is unavailable", not "this record is bad".
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    DependencyUnavailable,
    ConnectionError,
    TimeoutError,
    redis.ConnectionError,
    redis.TimeoutError,
)


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` is a dependency's outage (see :data:`OUTAGE_ERRORS`)."""
    return isinstance(error, OUTAGE_ERRORS)


class DependencyWait:
    """Capped exponential backoff through one outage at a time, interruptible by ``stop``.

    Use :meth:`call` to run a function until it gets past an outage, or
    :meth:`failed` / :meth:`recovered` around attempts made elsewhere (the
    consumer loop interleaves them with its bounded retries of bad records).
    Not thread-safe: one per thread of work.
    """

    def __init__(self, name: str, stop: threading.Event, first_backoff_s: float,
                 max_backoff_s: float) -> None:
        #: What is waiting (a consumer group, a service): the metrics' ``waiter`` attribute.
        self.name = name
        self.stop = stop
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        #: Failed attempts of the outage in progress (0: none in progress).
        self.attempts = 0
        #: Outages waited out (ended) and failed attempts overall, for tests and logs.
        self.outages = 0
        self.total_attempts = 0
        self._since = 0.0
        self._delay = first_backoff_s
        self._first_error = ""
        meter = metrics.get_meter("rtml.dependency")
        self._attributes = {"waiter": name}
        self._waiting = meter.create_up_down_counter(
            "rtml_dependency_waiting",
            description="1 while this consumer waits for an unavailable dependency "
                        "(its records held, offsets not committed)")
        self._waiting.add(0, self._attributes)  # exported from the start: reads 0
        self._attempt_counter = meter.create_counter(
            "rtml_dependency_outage_attempts",
            description="Attempts that failed because a dependency was unavailable")
        self._attempt_counter.add(0, self._attributes)

    @property
    def waiting(self) -> bool:
        return self.attempts > 0

    def failed(self, error: BaseException, holding: str = "") -> None:
        """Note a failed attempt and sleep the backoff; raise :class:`StoppedWaiting` on stop.

        ``holding`` says what waits with it (e.g. "a batch of 40 records"), for the log.
        """
        if self.attempts == 0:
            self._since = time.monotonic()
            self._delay = self.first_backoff_s
            self._first_error = f"{type(error).__name__}: {error}"
            self._waiting.add(1, self._attributes)
            logger.warning("%s: dependency unavailable (%s); waiting for it%s, retrying with "
                           "backoff up to %.1fs, nothing dead-lettered", self.name,
                           self._first_error, f" with {holding}" if holding else "",
                           self.max_backoff_s)
        self.attempts += 1
        self.total_attempts += 1
        self._attempt_counter.add(1, self._attributes)
        delay, self._delay = self._delay, min(self._delay * 2, self.max_backoff_s)
        if self.stop.wait(delay):
            self._end("stopped while waiting")
            raise StoppedWaiting(f"{self.name}: stopped while a dependency was unavailable")

    def recovered(self) -> None:
        """An attempt got past the dependency: end the outage in progress, if any."""
        if self.attempts:
            self.outages += 1
            self._end("dependency available again")

    def call(self, function: Callable[[], T], holding: str = "") -> T:
        """``function()``, retried through outages; its other errors propagate."""
        while True:
            try:
                result = function()
            except OUTAGE_ERRORS as error:
                self.failed(error, holding)
                continue
            self.recovered()
            return result

    def _end(self, how: str) -> None:
        logger.info("%s: %s after %d failed attempt(s) over %.1fs (first error: %s)",
                    self.name, how, self.attempts, time.monotonic() - self._since,
                    self._first_error)
        self._waiting.add(-1, self._attributes)
        self.attempts = 0
