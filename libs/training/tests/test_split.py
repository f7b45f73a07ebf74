"""The train / delay / test split and its known-compromised removal, on hand-made frames."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from rtml_training.split import (
    SplitConfig,
    SplitError,
    make_split,
    period_bounds,
    prequential_splits,
)

START = date(2018, 7, 25)


def frame(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    """Rows of (day offset from START, customer, fraud)."""
    days = pd.to_datetime([START.isoformat()] * len(rows), utc=True) + pd.to_timedelta(
        [r[0] for r in rows], unit="D")
    return pd.DataFrame({"day": days, "customer_id": [r[1] for r in rows],
                         "is_fraud": [bool(r[2]) for r in rows]})


def every_day(customers: range, days: range) -> list[tuple[int, int, int]]:
    return [(d, c, 0) for d in days for c in customers]


CONFIG = SplitConfig(train_start=START, train_days=2, delay_days=2, test_days=3)


def test_periods_follow_the_config() -> None:
    assert CONFIG.train_end == date(2018, 7, 27)
    assert CONFIG.test_start == date(2018, 7, 29) and CONFIG.test_last_day == date(2018, 7, 31)
    assert CONFIG.describe() == ("train 2018-07-25..2018-07-26, delay 2 d, "
                                 "test 2018-07-29..2018-07-31")
    assert SplitConfig().describe() == ("train 2018-07-25..2018-07-31, delay 7 d, "
                                        "test 2018-08-08..2018-08-14")


def test_train_and_test_rows_without_fraud() -> None:
    data = frame(every_day(range(3), range(-1, 9)))  # one day before, two after
    split = make_split(data, CONFIG)
    days = (data["day"] - pd.Timestamp(START.isoformat(), tz="UTC")).dt.days.to_numpy()
    assert sorted(set(days[split.train])) == [0, 1]
    assert sorted(set(days[split.test])) == [4, 5, 6]
    assert len(split.test) == 9 and split.removed_known == 0 and split.known_cards == 0


def test_known_compromised_cards_are_removed_from_the_right_test_days() -> None:
    rows = every_day(range(6), range(7))
    rows += [(0, 1, 1),   # customer 1: fraud in training -> out of every test day
             (2, 2, 1),   # customer 2: fraud on delay day 0 = known from test day 1 (2 - 1 = 1)
             (3, 3, 1),   # customer 3: fraud on delay day 1 = known from test day 2
             (4, 4, 1),   # customer 4: fraud on test day 0 itself: never removed (not known)
             (5, 5, 1)]   # customer 5: fraud on test day 1: its label is not known yet
    data = frame(rows)
    split = make_split(data, CONFIG)
    test = data.iloc[split.test]
    offset = (test["day"] - pd.Timestamp(START.isoformat(), tz="UTC")).dt.days
    by_day = {d: sorted(set(test.loc[offset == d, "customer_id"])) for d in (4, 5, 6)}
    assert by_day[4] == [0, 2, 3, 4, 5]   # test day 0: only training frauds known
    assert by_day[5] == [0, 3, 4, 5]      # test day 1: + frauds of day T + 1 - 1 = 2
    assert by_day[6] == [0, 4, 5]         # test day 2: + frauds of day 3
    assert split.known_cards == 3
    assert split.removed_known == 1 + 2 + 3  # one row per removed card and day
    assert len(split.test) == 6 * 3 + 2 - 6  # + the fraud rows of cards 4 and 5


def test_frauds_of_the_last_training_day_count_from_the_first_test_day() -> None:
    data = frame([*every_day(range(2), range(7)), (1, 1, 1)])
    split = make_split(data, CONFIG)
    assert 1 not in set(data.iloc[split.test]["customer_id"])


def test_folds_are_shifted_back_by_the_test_length() -> None:
    data = frame(every_day(range(2), range(-10, 7)))
    folds = prequential_splits(data, CONFIG, 3)
    assert [f.config.train_start for f in folds] == [date(2018, 7, 25), date(2018, 7, 22),
                                                     date(2018, 7, 19)]
    first, end = period_bounds(CONFIG, 3)
    assert first == pd.Timestamp("2018-07-19", tz="UTC")
    assert end == pd.Timestamp("2018-08-01", tz="UTC")
    for fold in folds:
        assert len(fold.train) == 4 and len(fold.test) == 6
    assert not np.intersect1d(folds[0].train, folds[0].test).size


def test_a_split_outside_the_data_is_refused_with_the_data_range() -> None:
    data = frame(every_day(range(2), range(0, 5)))
    with pytest.raises(SplitError, match=r"test day 2018-07-30 .*covers 2018-07-25\.\.2018-07-29"):
        make_split(data, CONFIG)
    with pytest.raises(SplitError, match="training period"):
        make_split(data, CONFIG.shifted(30))
    with pytest.raises(SplitError, match="column"):
        make_split(data.drop(columns="is_fraud"), CONFIG)


def test_invalid_configs_are_refused() -> None:
    with pytest.raises(SplitError):
        SplitConfig(train_days=0)
    with pytest.raises(SplitError):
        SplitConfig(delay_days=-1)
