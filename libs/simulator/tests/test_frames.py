"""Loading a simulator data set: the engine's frames, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_simulator.frames import DatasetError, load_dataset
from rtml_simulator.io import TRANSACTIONS_FILE


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sim = simulate(SimulationConfig(n_customers=50, n_terminals=100, n_days=5,
                                    radius=5.0 * (10_000 / 100) ** 0.5))
    return write_dataset(sim, tmp_path_factory.mktemp("tiny"))


def test_frames_match_the_file_and_labels_arrive_seven_days_later(data_dir: Path) -> None:
    raw = pq.read_table(data_dir / TRANSACTIONS_FILE).to_pandas()
    dataset = load_dataset(data_dir)
    assert len(dataset) == len(raw)
    assert list(dataset.history.columns) == ["transaction_id", "event_time", "customer_id",
                                             "terminal_id", "amount"]
    assert (dataset.labels["labeled_at"] - dataset.history["event_time"]
            == pd.Timedelta(days=7)).all()
    assert dataset.labels["is_fraud"].sum() == raw["tx_fraud"].sum()
    assert (dataset.day == dataset.history["event_time"].dt.floor("D")).all()
    assert dataset.history["customer_id"].dtype == "int64"
    # The file path works as well as the directory; string ids are the wire form.
    by_file = load_dataset(data_dir / TRANSACTIONS_FILE, limit=10, string_ids=True)
    assert len(by_file) == 10 and by_file.history["transaction_id"].iloc[3] == "3"


def test_a_missing_data_set_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="rtml simulate --out"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="no data set"):
        load_dataset(tmp_path / "nope.parquet")


def test_a_wrong_schema_names_the_column(data_dir: Path, tmp_path: Path) -> None:
    table = pq.read_table(data_dir / TRANSACTIONS_FILE)
    pq.write_table(table.drop_columns(["tx_fraud"]), tmp_path / "missing.parquet")
    with pytest.raises(DatasetError, match="missing column 'tx_fraud'"):
        load_dataset(tmp_path / "missing.parquet")
    index = table.schema.get_field_index("tx_amount")
    wrong = table.set_column(index, "tx_amount", table.column("tx_amount").cast(pa.string()))
    pq.write_table(wrong, tmp_path / "wrong.parquet")
    with pytest.raises(DatasetError, match="'tx_amount' has type string"):
        load_dataset(tmp_path / "wrong.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DatasetError, match="not a readable Parquet"):
        load_dataset(tmp_path / "junk.parquet")
