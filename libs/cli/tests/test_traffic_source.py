"""Reading the data set and choosing each slot's payment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from rtml_cli.traffic.source import (
    US_PER_DAY,
    SlotPicker,
    SourceError,
    load_source,
    source_from_table,
    transaction_id,
)
from rtml_simulator.io import TRANSACTIONS_SCHEMA

ORIGIN_US = int(datetime(2018, 4, 1, tzinfo=UTC).timestamp()) * 1_000_000


def _table(seconds: list[int]) -> pa.Table:
    """A data set with payments at these seconds after the first day's midnight."""
    n = len(seconds)
    secs = np.array(seconds, dtype=np.int64)
    return pa.table({
        "transaction_id": np.arange(100, 100 + n, dtype=np.int64),
        "tx_datetime": pa.array(ORIGIN_US + secs * 1_000_000, type=pa.timestamp("us", tz="UTC")),
        "customer_id": np.arange(n, dtype=np.int64) % 3,
        "terminal_id": np.arange(n, dtype=np.int64) % 5 + 10,
        "tx_amount": np.linspace(1.0, 99.0, n),
        "tx_time_seconds": secs,
        "tx_time_days": (secs // 86_400).astype(np.int32),
        "tx_fraud": (np.arange(n) % 4 == 0).astype(np.int8),
        "tx_fraud_scenario": (np.arange(n) % 4 == 0).astype(np.int8),
    }, schema=TRANSACTIONS_SCHEMA)


SECONDS = [5, 3_600, 86_400 + 10, 86_400 + 20, 2 * 86_400 + 7, 4 * 86_400 + 1]


def test_offsets_count_from_the_start_days_midnight() -> None:
    source = source_from_table(_table(SECONDS), start_day=1)
    assert source.offsets_us.tolist() == [10_000_000, 20_000_000, 86_407_000_000,
                                          3 * 86_400_000_000 + 1_000_000]
    assert source.span_us == 4 * US_PER_DAY  # days 1 to 4
    assert source.ids.tolist() == [102, 103, 104, 105]
    # --event-times data: the start day's midnight in the data set's own time.
    assert source.start_time == datetime(2018, 4, 2, tzinfo=UTC)


def test_rows_become_the_projects_events_with_run_ids() -> None:
    source = source_from_table(_table(SECONDS), start_day=0)
    when = datetime(2026, 12, 7, 12, tzinfo=UTC)
    tx = source.transaction(4, "run-a", when)
    assert (tx.transaction_id, tx.customer_id, tx.terminal_id, tx.event_time) == (
        "run-a-104", "1", "14", when)
    assert tx.amount == pytest.approx(float(source.amounts[4]))
    label = source.label(4, "run-a", when, timedelta(days=7))
    assert (label.transaction_id, label.customer_id, label.terminal_id) == ("run-a-104", "1", "14")
    assert label.transaction_time == when and label.labeled_at == when + timedelta(days=7)
    assert label.is_fraud is True and label.fraud_scenario == 1
    assert source.label(3, "run-a", when, timedelta(0)).is_fraud is False
    assert transaction_id("run-b", 104) != tx.transaction_id  # another run, another id


def test_bad_data_sets_are_precise_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"past the data.*days 0 to 4"):
        source_from_table(_table(SECONDS), start_day=5)
    with pytest.raises(SourceError, match=r"no transactions\.parquet in"):
        load_source(tmp_path, 0)
    with pytest.raises(SourceError, match="no transactions"):
        source_from_table(_table([]), start_day=0)


def test_a_slot_sends_the_latest_payment_due_and_skips_the_older_ones() -> None:
    picker = SlotPicker(np.array([0, 10, 20, 30, 40, 50], dtype=np.int64))
    assert picker.pick(-1) is None and picker.idle == 1
    assert picker.pick(0) == 0
    assert picker.pick(25) == 2 and picker.skipped == 1  # row 1 left out
    assert picker.pick(29) is None and picker.idle == 2  # nothing new due: idle, no repeat
    assert picker.pick(30) == 3
    assert not picker.exhausted
    assert picker.pick(1_000) == 5 and picker.skipped == 2
    assert picker.exhausted
    assert picker.pick(2_000) is None
