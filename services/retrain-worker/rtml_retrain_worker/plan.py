"""Which days a retrain trains and tests on, and whether the labels allow it yet.

A fraud label is final only ``label_maturity`` after its transaction (a
chargeback can take that long), so the newest days a model can honestly be
*tested* on end ``label_maturity`` before the archive's label clock. The
split of a retrain is anchored there, in whole UTC days::

    test_end   = floor_day(label_clock - label_maturity)      (exclusive)
    test_start = test_end - test_days
    train_end  = test_start - gap_days                         (exclusive)
    train_start = train_end - train_days

A request says what the model must have seen: its ``data_end`` is the end of
the window in which drift was detected, so the training period has to run
``min_days_after_drift`` whole days past it — the challenger must see enough
of the new behaviour to learn it, and the alerting window alone is one day.
Until the label clock moves far enough for that, the request waits
(:class:`Wait` says until which label time and why). A request without
``data_end`` trains as soon as the archive has labels.

Requests pending together are one episode of drift (the monitor keeps
alerting while it lasts): they are answered by one training, as soon as the
*earliest* of them is served (a request without ``data_end`` is served at
once, so a burst holding one trains as soon as there are labels). Waiting
for the latest instead would never end while the drift goes on, since every
new alert moves the bar forward as fast as the labels arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from rtml_common.events import RetrainRequest
from rtml_training.split import SplitConfig


@dataclass(frozen=True)
class SplitPolicy:
    """The retrain split's lengths (settings ``*_days``)."""

    train_days: int = 14
    gap_days: int = 0
    test_days: int = 7
    label_maturity: timedelta = timedelta(days=7)
    min_days_after_drift: int = 3

    def __post_init__(self) -> None:
        if self.train_days < 1 or self.test_days < 1:
            raise ValueError("train_days and test_days must be >= 1")
        if self.gap_days < 0 or self.min_days_after_drift < 0:
            raise ValueError("gap_days and min_days_after_drift must be >= 0")
        if self.label_maturity < timedelta(0):
            raise ValueError("label_maturity must be >= 0")


@dataclass(frozen=True)
class Ready:
    """Train now on this split; ``as_of`` is the label time the training set sees."""

    split: SplitConfig
    as_of: datetime


@dataclass(frozen=True)
class Wait:
    """Not yet: the labels must reach ``until`` (label time) first, because ``reason``."""

    until: datetime
    reason: str


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def day_after(moment: datetime) -> date:
    """The first day boundary at or after ``moment`` (a day containing it is included)."""
    day = moment.astimezone(UTC).date()
    return day if _midnight(day) == moment else day + timedelta(days=1)


def required_train_end(request: RetrainRequest, policy: SplitPolicy) -> date | None:
    """The earliest training end (exclusive day) that serves ``request``; None: any."""
    if request.data_end is None:
        return None
    return day_after(request.data_end) + timedelta(days=policy.min_days_after_drift)


def split_at(label_clock: datetime, policy: SplitPolicy) -> SplitConfig:
    """The split the labels known at ``label_clock`` allow (see the module doc)."""
    test_end = (label_clock - policy.label_maturity).astimezone(UTC).date()
    train_end = test_end - timedelta(days=policy.test_days + policy.gap_days)
    return SplitConfig(train_start=train_end - timedelta(days=policy.train_days),
                       train_days=policy.train_days, delay_days=policy.gap_days,
                       test_days=policy.test_days)


def label_time_needed(train_end: date, policy: SplitPolicy) -> datetime:
    """The label clock at which the split's training period first ends on ``train_end``."""
    return (_midnight(train_end + timedelta(days=policy.gap_days + policy.test_days))
            + policy.label_maturity)


def decide(requests: list[RetrainRequest], label_clock: datetime | None,
           policy: SplitPolicy) -> Ready | Wait:
    """One decision for a coalesced burst: it trains once the earliest request is served."""
    needs = [required_train_end(r, policy) for r in requests]
    dated = [n for n in needs if n is not None]
    # A request without data_end is served by any training: it is the earliest one.
    need = min(dated) if dated and len(dated) == len(needs) else None
    if label_clock is None:
        until = (label_time_needed(need, policy) if need is not None
                 else datetime.min.replace(tzinfo=UTC))
        return Wait(until, "no labels archived yet")
    split = split_at(label_clock, policy)
    if need is not None and split.train_end < need:
        until = label_time_needed(need, policy)
        return Wait(until, (
            f"the training period must run to {need - timedelta(days=1)} (data_end + "
            f"{policy.min_days_after_drift} d) and its {policy.test_days}-day test "
            f"period needs labels {policy.label_maturity / timedelta(days=1):g} d mature: "
            f"label time "
            f"{until:%Y-%m-%d %H:%M} needed, the archive's is {label_clock:%Y-%m-%d %H:%M}"))
    return Ready(split, label_clock)
