"""What a request-time computation asks of an entity's logs, whatever holds them.

:class:`~rtml_features.request_vector.RequestVectors` only ever calls the
methods below, so anything that answers them exactly can feed it: the
in-memory reference logs (:class:`~rtml_features.prefix_log.EventLog`,
:class:`~rtml_features.prefix_log.LabelLog`) and the views built from the
O(1) sorted-set members one Redis round trip returns
(:mod:`rtml_features.online_store.redis.prefix_reader`). Both sides are held
to the batch engine by the same tests, so the request path has one meaning
whichever store serves it.

Every window is half-open, ``(after_ms, until_ms]``; a boundary before what a
log still holds raises :class:`~rtml_features.prefix_log.OutOfRange`.
"""

from __future__ import annotations

from typing import Protocol

from rtml_features.prefix_log import EventLog, Extreme, LabelLog


class EventLogQuery(Protocol):
    """The event-log questions of a request: counts, sums, extremes, membership."""

    def count(self, after_ms: int, until_ms: int) -> int:
        """Events in ``(after_ms, until_ms]``."""
        ...

    def total(self, name: str, after_ms: int, until_ms: int) -> float:
        """Sum of field ``name`` over the events in ``(after_ms, until_ms]``."""
        ...

    def extreme(self, name: str, kind: Extreme, after_ms: int, until_ms: int) -> float | None:
        """min / max of ``name`` over ``(after_ms, until_ms]``; None for an empty window."""
        ...

    def has(self, tid: str, time_ms: int) -> bool:
        """Whether the event ``(time_ms, tid)`` is in the log."""
        ...


class LabelLogQuery(Protocol):
    """The label-log question of a request: label sums known by a time."""

    def known_total(self, name: str, after_ms: int, until_ms: int, known_by_ms: int) -> float:
        """Sum of label ``name`` over ``(after_ms, until_ms]``, labels known by ``known_by_ms``."""
        ...


def _reference_logs_conform(events: EventLog, labels: LabelLog) -> tuple[EventLogQuery,
                                                                           LabelLogQuery]:
    """Never called: mypy checks here that the reference logs implement the protocols."""
    return events, labels
