"""Refuse events whose time is implausibly far from the stream's own time (issue #17).

Event time drives everything in the worker: a transaction's time advances its
partition's event time (hence the watermark, the alignment's view of which
partition leads) and becomes its entities' as-of in the online store. One
record at ``9999-12-31`` therefore froze its customer's and terminal's Redis
hashes (nothing later is newer) and parked its partition's event time in
9999: the partition stopped holding back the watermark, the alignment paused
it as "ahead", and its valid transactions, read later, went to
``transactions.late``. Such a record is *quarantined* instead: dead-lettered
with the reason before it touches any state (see ``FeatureWorker``).

The rule, per input partition (a watermark source ``topic:partition``), with
``now`` the wall clock and ``lead`` the partition's highest *event time minus
the wall-clock time it was applied at* (so ``now + lead`` is where its event
time would stand had it kept advancing at the speed of real time since)::

    refuse t  if  t > now + max_clock_skew        nothing happens in the wall clock's future
              or  t > now + lead + max_ahead       ahead of the partition's own time

A quiet partition's bound grows with real elapsed time (a live stream after
a night without payments, or after the service was down: ``lead`` is saved in
the checkpoint, so the downtime counts); a fast replay stays tight (its event
time runs ahead of the wall clock, ``lead`` grows with every record). Only
events that advance their partition's time update ``lead``: a late
transaction (the lateness path) does not. ``max_ahead`` must exceed the
largest gap between consecutive events of one partition in a faster-than-real
time replay (a day by default: a night without payments on one partition).
Per partition, not stream-wide: partitions legitimately lead each other by
days while a backlog is read (see :mod:`.alignment`), labels by the label
delay and more at start-up, so only a partition's own time is a tight
reference.

A partition's *first* event (no ``lead`` yet) has no own reference. It is
held within ``max_partition_skew`` of the stream's time (``now`` plus the
highest ``lead`` of any partition), in both directions: a far-past first event
(1970, year 1) would otherwise become its partition's time and drag the
watermark (and the alignment's floor) back decades, and anchor the partition
so low that its next valid events would look "ahead". The stream's very first
event has nothing to compare with: it only has to be newer than ``now -
max_event_age`` (and pass the wall-clock bound).

Labels are checked at their ``labeled_at`` (the time they take effect and
advance their partition's time with); their ``transaction_time`` must not be
after ``labeled_at`` by more than the clock skew (a label is known after its
transaction happened; a far-future ``transaction_time`` matches no
transaction and would lose the label).

Too-old transactions on a partition that has a time stay the lateness path's
business (``transactions.late``); an old label on such a partition moves no
time and is applied as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, timedelta

from rtml_features.rows import EPOCH

#: ``rtml-dlq-error-type`` of a quarantined record.
ERROR_TYPE = "ImplausibleEventTime"

#: Refusal kinds (the ``reason`` attribute of ``rtml_quarantined_events_total``).
AHEAD_OF_WALL_CLOCK = "ahead_of_wall_clock"
AHEAD_OF_PARTITION = "ahead_of_partition"
FAR_FROM_STREAM = "far_from_stream"
TOO_OLD = "too_old"
LABEL_BEFORE_TRANSACTION = "label_before_transaction"


@dataclass(frozen=True)
class EventTimeBounds:
    """How far from the stream's time an event may be (milliseconds; 0 disables a bound)."""

    max_ahead_ms: int = 86_400_000
    max_clock_skew_ms: int = 600_000
    max_partition_skew_ms: int = 365 * 86_400_000
    max_event_age_ms: int = 30 * 365 * 86_400_000

    def __post_init__(self) -> None:
        if min(self.max_ahead_ms, self.max_clock_skew_ms, self.max_partition_skew_ms,
               self.max_event_age_ms) < 0:
            raise ValueError("event-time bounds must be >= 0 (0 disables one)")


@dataclass(frozen=True)
class Refusal:
    """Why an event was refused: a ``kind`` for metrics, a precise ``reason`` for people."""

    kind: str
    reason: str


def _stamp(ms: int) -> str:
    """An epoch-ms time as ISO 8601 UTC, or the raw number when out of datetime's range."""
    try:
        return (EPOCH + timedelta(milliseconds=ms)).astimezone(UTC).isoformat()
    except OverflowError:
        return f"{ms} ms since 1970"


def _span(ms: int) -> str:
    """A duration for a reason text: seconds, with days when long."""
    seconds = ms / 1000
    return f"{seconds:.0f} s ({seconds / 86_400:.1f} days)" if abs(seconds) >= 86_400 \
        else f"{seconds:.3f} s"


class EventTimeGuard:
    """Applies :class:`EventTimeBounds` per input partition; see the module docstring.

    ``leads`` (source -> highest event time minus the wall-clock ms it was applied
    at) is owned by the caller: the worker passes the streaming computer's
    ``source_leads_ms``, which is checkpointed with the source times it qualifies.
    Call :meth:`start_batch` once per batch (one wall-clock read), :meth:`check`
    before applying an event, :meth:`advanced` once it has advanced its
    partition's time.
    """

    def __init__(self, bounds: EventTimeBounds, leads: dict[str, int],
                 clock: Callable[[], float] = time.time) -> None:
        self.bounds = bounds
        self.leads = leads
        self.clock = clock
        self.now_ms = int(clock() * 1000)
        self._ahead = bounds.max_ahead_ms or None
        self._skew = bounds.max_clock_skew_ms or None

    def start_batch(self) -> None:
        """Read the wall clock for the batch about to be applied (milliseconds apart)."""
        self.now_ms = int(self.clock() * 1000)

    def check(self, source: str, time_ms: int) -> Refusal | None:
        """None if an event of ``source`` at ``time_ms`` is plausible, else why not."""
        offset = time_ms - self.now_ms
        lead = self.leads.get(source)
        if lead is not None:  # the common case: two comparisons
            ahead = self._ahead
            skew = self._skew
            if (skew is None or offset <= skew) and (ahead is None or offset <= lead + ahead):
                return None
        return self._refusal(source, time_ms, lead)

    def check_label(self, source: str, labeled_at_ms: int,
                    transaction_time_ms: int) -> Refusal | None:
        """:meth:`check` at ``labeled_at``, and its transaction no later than that."""
        refusal = self.check(source, labeled_at_ms)
        if refusal is not None:
            return refusal
        skew = self.bounds.max_clock_skew_ms
        if skew and transaction_time_ms - labeled_at_ms > skew:
            return Refusal(LABEL_BEFORE_TRANSACTION, (
                f"transaction_time {_stamp(transaction_time_ms)} is "
                f"{_span(transaction_time_ms - labeled_at_ms)} after labeled_at "
                f"{_stamp(labeled_at_ms)}: a label is known after its transaction "
                f"(tolerance: the clock skew, {_span(skew)})"))
        return None

    def advanced(self, source: str, time_ms: int) -> None:
        """``source``'s event time moved to ``time_ms`` (an accepted, applied event)."""
        offset = time_ms - self.now_ms
        lead = self.leads.get(source)
        if lead is None or offset > lead:
            self.leads[source] = offset

    def _refusal(self, source: str, time_ms: int, lead: int | None) -> Refusal | None:
        """The slow path: a refusal's reason, or a partition's first event."""
        bounds = self.bounds
        now = self.now_ms
        offset = time_ms - now
        if self._skew is not None and offset > self._skew:
            return Refusal(AHEAD_OF_WALL_CLOCK, (
                f"event time {_stamp(time_ms)} is {_span(offset)} ahead of the wall clock "
                f"({_stamp(now)}); allowed clock skew {_span(bounds.max_clock_skew_ms)}"))
        if lead is not None:
            if self._ahead is not None and offset > lead + self._ahead:
                partition_time = now + lead
                return Refusal(AHEAD_OF_PARTITION, (
                    f"event time {_stamp(time_ms)} is {_span(time_ms - partition_time)} ahead "
                    f"of {source}'s event time carried forward at wall-clock speed "
                    f"({_stamp(partition_time)}); allowed {_span(bounds.max_ahead_ms)}"))
            return None
        # The partition's first event: compared with the stream's time, if there is one.
        if self.leads:
            stream_time = now + max(self.leads.values())
            distance = time_ms - stream_time
            limit = bounds.max_partition_skew_ms
            if limit and abs(distance) > limit:
                where = "ahead of" if distance > 0 else "behind"
                return Refusal(FAR_FROM_STREAM, (
                    f"first event of {source} at {_stamp(time_ms)} is {_span(abs(distance))} "
                    f"{where} the stream's event time ({_stamp(stream_time)}); allowed "
                    f"{_span(limit)}"))
            return None
        age_limit = bounds.max_event_age_ms
        if age_limit and -offset > age_limit:
            return Refusal(TOO_OLD, (
                f"first event of the stream at {_stamp(time_ms)} is {_span(-offset)} older "
                f"than the wall clock ({_stamp(now)}); allowed {_span(age_limit)}"))
        return None
