"""Which calibration a run keeps: a map only where it beats the raw scores out of sample,
fitted on validation weeks that lie inside the data."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_training.config import TrainConfig
from rtml_training.pipeline import train
from rtml_training.selection.search import SelectionConfig
from rtml_training.split import SplitConfig, SplitError

SMALL = SimulationConfig(n_customers=500, n_terminals=1_000, n_days=60,
                         radius=5.0 * (10_000 / 1_000) ** 0.5)
#: Four validation folds fit before it (their training weeks start 04-22 .. 04-01).
LATE = SplitConfig(train_start=date(2018, 5, 6))
#: No validation fold's training week fits inside the data (it starts 04-01).
EARLY = SplitConfig(train_start=date(2018, 4, 10))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(simulate(SMALL), tmp_path_factory.mktemp("small"))


def test_distorted_probabilities_get_a_platt_map_that_improves_them(data: Path) -> None:
    """scale_pos_weight inflates every score; the cross-fitted check sees Platt helps,
    keeps it, and the test weeks confirm it (Brier 0.14 -> 0.04 on this data)."""
    result = train(TrainConfig(data=data, split=LATE,
                               xgb_params={"scale_pos_weight": 100, "max_depth": 3}))
    report = result.calibration
    assert report is not None and report.method == "platt" and "<" in report.reason
    assert result.model.calibration is not None
    assert report.brier < report.brier_raw / 2 and report.ece < report.ece_raw / 2
    assert report.fitted_on.count("train") == 4


def test_forced_maps_are_kept_whatever_the_check_says(data: Path) -> None:
    for method in ("platt", "isotonic"):
        result = train(TrainConfig(data=data, split=LATE,
                                   calibration=method))  # type: ignore[arg-type]
        assert result.model.calibration is not None
        assert result.model.calibration.method == method
    river = train(TrainConfig(data=data, split=LATE, model="river"))
    assert river.calibration is None and river.model.calibration is None   # auto: none


def test_without_validation_weeks_the_raw_scores_are_served_and_selection_refused(
        data: Path) -> None:
    result = train(TrainConfig(data=data, split=EARLY))
    assert result.calibration is None and result.model.calibration is None
    with pytest.raises(SplitError, match="starts before the data"):
        train(TrainConfig(data=data, split=EARLY, selection=SelectionConfig(trials=2)))
