"""The evaluation protocol's split: train, wait for labels, test on cards not yet known.

Fraud labels take time to arrive, so a model trained on days ``[s, s + T)``
only goes live once their labels are in, ``D`` days later; its test period is
``[s + T + D, s + T + D + V)``. The days in between (the *delay period*) are
neither trained nor tested on.

On each test day, cards (customers) already *known* to be compromised are
dropped from the test: an investigator would have blocked them already, so
catching them again says nothing about the model. Known means a fraud in the
training period, or on a delay-period day whose label has arrived by then:
for test day ``i`` (0-based), the frauds of day ``s + T + i - 1`` are added
first. This is the reference handbook's ``get_train_test_set``, kept exactly
so its published results are comparable with ours.

Prequential folds repeat the same split shifted back by the test length
(fold ``k`` starts ``k x V`` days earlier), as the handbook does, to see how
much the figures vary from one week to the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

I64 = npt.NDArray[np.int64]

#: Columns :func:`make_split` reads.
SPLIT_COLUMNS = ("day", "customer_id", "is_fraud")


class SplitError(ValueError):
    """The split does not fit the data (empty period, bad configuration)."""


@dataclass(frozen=True)
class SplitConfig:
    """Where the split starts and how long each period is, in days."""

    train_start: date = date(2018, 7, 25)
    train_days: int = 7
    delay_days: int = 7
    test_days: int = 7

    def __post_init__(self) -> None:
        if self.train_days < 1 or self.test_days < 1:
            raise SplitError("train_days and test_days must be >= 1")
        if self.delay_days < 0:
            raise SplitError("delay_days must be >= 0")

    @property
    def train_end(self) -> date:
        """First day after the training period."""
        return self.train_start + timedelta(days=self.train_days)

    @property
    def test_start(self) -> date:
        return self.train_end + timedelta(days=self.delay_days)

    @property
    def test_end(self) -> date:
        """First day after the test period."""
        return self.test_start + timedelta(days=self.test_days)

    @property
    def train_last_day(self) -> date:
        return self.train_end - timedelta(days=1)

    @property
    def test_last_day(self) -> date:
        return self.test_end - timedelta(days=1)

    def shifted(self, days: int) -> SplitConfig:
        """The same split ``days`` earlier (negative: later)."""
        return replace(self, train_start=self.train_start - timedelta(days=days))

    def fold(self, k: int) -> SplitConfig:
        """Prequential fold ``k``: shifted back by ``k`` test lengths (fold 0 is this split)."""
        return self.shifted(k * self.test_days)

    def validation(self) -> SplitConfig:
        """The split model selection validates on (the reference handbook's protocol).

        Moved back by the delay and test lengths, so its test period is this
        split's training period: everything it reads was known when this
        split's model is trained, and the test period is never looked at. Its
        own prequential folds (:meth:`fold`) move further back.
        """
        return self.shifted(self.delay_days + self.test_days)

    def describe(self) -> str:
        return (f"train {self.train_start}..{self.train_last_day}, "
                f"delay {self.delay_days} d, test {self.test_start}..{self.test_last_day}")


@dataclass(frozen=True)
class Split:
    """Row positions (into the frame given to :func:`make_split`) of one split."""

    config: SplitConfig
    train: I64
    test: I64
    #: Test-period rows dropped because their card was already known compromised.
    removed_known: int
    #: Cards known compromised by the last test day.
    known_cards: int


def _utc(day: date) -> pd.Timestamp:
    return pd.Timestamp(day.isoformat(), tz="UTC")


def calendar_days(times: pd.Series) -> npt.NDArray[np.datetime64]:
    """UTC calendar day of each timestamp as ``datetime64[D]`` (naive times are taken as UTC)."""
    if isinstance(times.dtype, pd.DatetimeTZDtype):
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times.to_numpy().astype("datetime64[D]")


def make_split(frame: pd.DataFrame, config: SplitConfig) -> Split:
    """The split of ``frame`` (columns ``day``, ``customer_id``, ``is_fraud``).

    ``day`` holds each row's UTC calendar day (midnight timestamps, tz-aware).
    Raises :class:`SplitError` when the training period or a test day has no
    rows (the split does not fit inside the data).
    """
    missing = [c for c in SPLIT_COLUMNS if c not in frame.columns]
    if missing:
        raise SplitError(f"frame lacks column(s) {missing}")
    day = calendar_days(frame["day"])
    customer = frame["customer_id"]
    fraud = frame["is_fraud"].to_numpy(dtype=bool)
    start = np.datetime64(config.train_start.isoformat(), "D")
    one_day = np.timedelta64(1, "D")

    train_mask = (day >= start) & (day < start + config.train_days * one_day)
    if not train_mask.any():
        raise SplitError(f"no transactions in the training period ({config.describe()}); "
                         f"{_coverage(frame)}")
    known = set(customer[train_mask & fraud].tolist())
    tests: list[I64] = []
    removed = 0
    for i in range(config.test_days):
        delay_day = start + (config.train_days + i - 1) * one_day
        known.update(customer[(day == delay_day) & fraud].tolist())
        test_day = start + (config.train_days + config.delay_days + i) * one_day
        on_day = day == test_day
        if not on_day.any():
            raise SplitError(f"no transactions on test day {test_day} "
                             f"({config.describe()}); {_coverage(frame)}")
        keep = on_day & ~customer.isin(known).to_numpy()
        removed += int(on_day.sum() - keep.sum())
        tests.append(np.flatnonzero(keep).astype(np.int64))
    return Split(config=config, train=np.flatnonzero(train_mask).astype(np.int64),
                 test=np.concatenate(tests), removed_known=removed, known_cards=len(known))


def prequential_splits(frame: pd.DataFrame, config: SplitConfig, folds: int) -> list[Split]:
    """Folds 0..folds-1, fold ``k`` shifted back by ``k`` test lengths (fold 0 = ``config``)."""
    if folds < 1:
        raise SplitError("folds must be >= 1")
    return [make_split(frame, config.fold(k)) for k in range(folds)]


def period_bounds(config: SplitConfig, folds: int = 0,
                  others: Sequence[SplitConfig] = ()) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[first, end) event-time range every split of ``config`` (and its folds) reads, widened
    to cover ``others`` (e.g. model selection's validation folds)."""
    earliest = min(c.train_start for c in (config.fold(max(folds - 1, 0)), *others))
    latest = max(c.test_end for c in (config, *others))
    return _utc(earliest), _utc(latest)


def _coverage(frame: pd.DataFrame) -> str:
    if not len(frame):
        return "the data is empty"
    first, last = frame["day"].min(), frame["day"].max()
    return f"the data covers {first.date()}..{last.date()}"
