"""Fraud labels of accepted payments, produced to ``labels`` when their delay has passed.

A payment's label becomes known ``delay`` after it in event time (the data
set's delay, 7 days, as the replay and training assume: features read
label-delayed windows with the labels known by then). On the wall clock that
is ``delay / speed`` after the event clock read the payment's time (7 days at
speed 3600: 168 s); ``--label-delay-s`` sets the wall delay instead, and the
label's ``labeled_at`` is then ``transaction_time + label_delay_s * speed``,
so event and wall clocks keep agreeing.

Only payments the API accepted (HTTP 200) get a label. Labels not due when
the source stops are *counted as pending* and not produced: their
``labeled_at`` lies ahead of the event clock (possibly of the wall clock),
and producing them would let features see a label before its time. With
``--flush-pending-labels`` they are produced at the stop anyway, each with
its own ``labeled_at`` (as the replay's ``--pending-labels`` does).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from datetime import timedelta

from rtml_common.events import Label
from rtml_common.kafka.producer import EventProducer
from rtml_simulator.replay import ReplayOptions

#: The data set's label delay in event time (the replay's and training's default).
DATASET_LABEL_DELAY: timedelta = ReplayOptions.label_delay


@dataclass(frozen=True)
class LabelDelay:
    """A label's delay, on the wall clock and in event time."""

    wall_s: float
    event: timedelta


def label_delay(speed: float, override_wall_s: float | None = None,
                dataset_delay: timedelta = DATASET_LABEL_DELAY) -> LabelDelay:
    """The data set's delay scaled by ``speed``, or ``override_wall_s`` (module docstring)."""
    if override_wall_s is None:
        return LabelDelay(dataset_delay.total_seconds() / speed, dataset_delay)
    return LabelDelay(override_wall_s, timedelta(seconds=override_wall_s * speed))


@dataclass(order=True)
class _Due:
    due_s: float
    seq: int
    label: Label = field(compare=False)


class LabelSchedule:
    """Labels waiting for their wall-clock due time (seconds after the run's start)."""

    def __init__(self) -> None:
        self._heap: list[_Due] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, label: Label, due_s: float) -> None:
        heapq.heappush(self._heap, _Due(due_s, next(self._seq), label))

    def pop_due(self, elapsed_s: float) -> list[Label]:
        """The labels due by ``elapsed_s``, in due order (ties: in the order added)."""
        due: list[Label] = []
        while self._heap and self._heap[0].due_s <= elapsed_s:
            due.append(heapq.heappop(self._heap).label)
        return due

    def drain(self) -> list[Label]:
        """Every label still waiting, in due order (the flush at the stop)."""
        return self.pop_due(float("inf"))


class LabelPublisher:
    """Produces labels with the project's producer (keyed by customer, versioned headers)."""

    def __init__(self, producer: EventProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.produced = 0

    def publish(self, labels: list[Label]) -> None:
        for label in labels:
            self.producer.send(label, topic=self.topic)
        self.produced += len(labels)

    def failed(self) -> int:
        """Records the broker refused so far (the final flush raises for them)."""
        return len(self.producer.failures())
