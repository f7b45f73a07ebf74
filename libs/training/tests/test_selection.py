"""Model selection: validation folds before training, a bounded seeded search, the space."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from rtml_training.selection.families import FAMILIES, get_family
from rtml_training.selection.search import SelectionConfig, search
from rtml_training.selection.space import SPACES
from rtml_training.split import SplitConfig, make_split

NAMES = ["amount", "noise"]


def test_validation_weeks_end_where_training_starts_the_handbook_protocol() -> None:
    split = SplitConfig(train_start=date(2018, 7, 25))
    validation = split.validation()
    assert validation.train_start == date(2018, 7, 11)
    assert (validation.test_start, validation.test_last_day) == (split.train_start,
                                                                 split.train_last_day)
    assert validation.fold(3).test_start == date(2018, 7, 4)
    assert validation.fold(3).train_start == date(2018, 6, 20)


def frame(days: int = 40, per_day: int = 150, seed: int = 0) -> pd.DataFrame:
    """A learnable toy stream: fraud when the amount is high, with label noise."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    day = pd.Timestamp("2018-06-01", tz="UTC") + pd.to_timedelta(np.repeat(np.arange(days),
                                                                           per_day), unit="D")
    amount = rng.gamma(2.0, 30.0, n)
    fraud = (amount + rng.normal(0, 40, n) > 160) & (rng.random(n) < 0.8)
    return pd.DataFrame({"day": day, "event_time": day, "transaction_id": np.arange(n),
                         "customer_id": rng.integers(0, 3_000, n), "amount": amount,
                         "noise": rng.normal(size=n), "is_fraud": fraud})


def validation_splits(data: pd.DataFrame) -> list:
    config = SplitConfig(train_start=date(2018, 6, 22), train_days=4, delay_days=2,
                         test_days=3).validation()
    return [make_split(data, config.fold(k)) for k in range(2)]


def test_the_search_starts_from_the_defaults_and_respects_its_bound() -> None:
    data = frame()
    family = get_family("xgboost")
    seen: list[tuple[int, int]] = []
    found = search(family, data, validation_splits(data), NAMES,
                   SelectionConfig(trials=4, prune=False), fixed={"n_estimators": 20},
                   on_trial=lambda _f, done, bound, _b, eta: seen.append((done, bound)))
    assert len(found.trials) == 4 and found.stopped_by == "trials"
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    first = found.trials[0]
    assert first.params == SPACES["xgboost"].without({"n_estimators"}).clip(family.defaults)
    assert "n_estimators" not in found.space.names                  # fixed: not searched
    assert found.chosen_params["n_estimators"] == 20                 # ... but always used
    assert all(len(t.fold_metrics) == 2 for t in found.trials)
    assert found.best.value == max(t.value for t in found.trials)
    assert found.best.value >= first.value                           # never worse than defaults
    means = found.best.figure_means()
    assert 0.5 < means["auc_mean"] <= 1 and means["ap_std"] >= 0


def test_the_same_seed_gives_the_same_trials_and_choice() -> None:
    data = frame()
    splits = validation_splits(data)
    config = SelectionConfig(trials=3, prune=False)
    runs = [search(get_family("logistic-regression"), data, splits, NAMES, config, seed=7)
            for _ in range(2)]
    assert [t.params for t in runs[0].trials] == [t.params for t in runs[1].trials]
    assert runs[0].best.number == runs[1].best.number
    other = search(get_family("logistic-regression"), data, splits, NAMES, config, seed=8)
    assert [t.params for t in other.trials][1:] != [t.params for t in runs[0].trials][1:]


def test_a_time_bound_stops_the_search_early() -> None:
    data = frame()
    found = search(get_family("random-forest"), data, validation_splits(data), NAMES,
                   SelectionConfig(trials=50, timeout_s=0.5, prune=False),
                   fixed={"n_estimators": 10})
    assert 1 <= len(found.trials) < 50 and found.stopped_by == "timeout"


def test_every_family_scores_rows_as_probabilities() -> None:
    data = frame(days=12)
    train, scored = data.iloc[:1_000], data.iloc[1_000:1_300]
    for family in FAMILIES.values():
        small = {"n_estimators": 10} if "n_estimators" in family.space.names else {}
        scores = family.fit_score(train, scored, NAMES, small, 0)
        assert scores.shape == (300,) and np.all((scores >= 0) & (scores <= 1)), family.name


def test_bad_selection_settings_and_family_names_are_refused() -> None:
    with pytest.raises(ValueError, match="metric"):
        SelectionConfig(metric="f1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SelectionConfig(trials=0)
    with pytest.raises(KeyError, match="known: logistic-regression"):
        get_family("svm")
