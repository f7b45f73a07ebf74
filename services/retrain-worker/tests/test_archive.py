"""The archive: segments round-trip, resume offsets, dedupe, crash recovery, clocks, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from rtml_common.events import Label, Transaction
from rtml_retrain_worker.archive import (
    LABELS,
    OFFSET_BEGINNING,
    TRANSACTIONS,
    Archive,
    ArchivedRecord,
)

T0 = datetime(2018, 5, 1, tzinfo=UTC)


def tx(i: int, at: datetime, partition: int = 0, offset: int | None = None,
       amount: float = 10.0) -> ArchivedRecord:
    event = Transaction(transaction_id=str(i), event_time=at, customer_id=f"c{i % 7}",
                        terminal_id=f"t{i % 5}", amount=amount)
    return ArchivedRecord("transactions", partition, i if offset is None else offset, event)


def label(i: int, at: datetime, labeled_at: datetime, partition: int = 0, offset: int = 0,
          fraud: bool = False) -> ArchivedRecord:
    event = Label(transaction_id=str(i), customer_id=f"c{i % 7}", terminal_id=f"t{i % 5}",
                  transaction_time=at, labeled_at=labeled_at, is_fraud=fraud,
                  fraud_scenario=1 if fraud else 0)
    return ArchivedRecord("labels", partition, offset, event)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_segment_round_trip_and_resume_offsets(tmp_path: Path) -> None:
    archive = Archive(tmp_path, max_events=1000)
    archive.add([tx(i, T0 + timedelta(hours=i), partition=i % 2) for i in range(10)])
    archive.add([label(3, T0 + timedelta(hours=3), T0 + timedelta(days=7), offset=41,
                       fraud=True)])
    assert archive.resume_offset("transactions", 0) == OFFSET_BEGINNING  # nothing durable yet
    written = archive.flush()
    assert {s.kind for s in written} == {TRANSACTIONS, LABELS}

    reopened = Archive(tmp_path)
    frame = reopened.read(TRANSACTIONS)
    assert frame["transaction_id"].tolist() == [str(i) for i in range(10)]
    assert frame["event_time"].iloc[4] == pd.Timestamp(T0 + timedelta(hours=4))
    assert frame["amount"].tolist() == [10.0] * 10
    labels = reopened.read(LABELS)
    assert labels.to_dict("records")[0]["is_fraud"] is True
    assert labels["labeled_at"].iloc[0] == pd.Timestamp(T0 + timedelta(days=7))
    # Partition 0 had offsets 0, 2, ..., 8: resume at 9; partition 1 at 10.
    assert reopened.resume_offset("transactions", 0) == 9
    assert reopened.resume_offset("transactions", 1) == 10
    assert reopened.resume_offset("labels", 0) == 42
    assert reopened.resume_offset("labels", 3) == OFFSET_BEGINNING


def test_read_filters_by_event_time_and_dedupes_keeping_the_first(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    archive.add([tx(1, T0, amount=1.0), tx(2, T0 + timedelta(days=1))])
    archive.flush()
    # A redelivery of 1 (different amount to tell them apart) and a new one in a later segment.
    archive.add([tx(1, T0, offset=5, amount=99.0), tx(3, T0 + timedelta(days=2), offset=6)])
    archive.add([label(1, T0, T0 + timedelta(days=9), offset=0, fraud=False),
                 label(1, T0, T0 + timedelta(days=7), offset=1, fraud=True)])
    archive.flush()

    frame = archive.read(TRANSACTIONS)
    assert frame["transaction_id"].tolist() == ["1", "2", "3"]
    assert frame.loc[frame["transaction_id"] == "1", "amount"].item() == 1.0
    window = archive.read(TRANSACTIONS, T0 + timedelta(hours=12), T0 + timedelta(days=2))
    assert window["transaction_id"].tolist() == ["2"]
    labels = archive.read(LABELS)
    assert len(labels) == 1 and bool(labels["is_fraud"].item()) is True  # first known label


def test_crash_before_the_segment_is_written_loses_nothing(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    archive.add([tx(i, T0 + timedelta(minutes=i)) for i in range(5)])
    archive.flush()
    # Events 5..9 are consumed (and their offsets may even be committed by the group),
    # then the process dies before their segment is durable: a half-written temp file.
    archive.add([tx(i, T0 + timedelta(minutes=i)) for i in range(5, 10)])
    (archive.directory / "0000000002-transactions.parquet.tmp").write_bytes(b"PAR1 torn")

    after = Archive(tmp_path)
    assert not list(after.directory.glob("*.tmp"))
    resume = after.resume_offset("transactions", 0)
    assert resume == 5  # the archive, not the group's commit, says where to resume
    # Re-consume from there; a redelivered 4 (e.g. a producer retry) is deduped.
    after.add([tx(i, T0 + timedelta(minutes=i)) for i in range(resume, 10)]
              + [tx(4, T0 + timedelta(minutes=4), offset=10)])
    after.flush()
    assert after.read(TRANSACTIONS)["transaction_id"].tolist() == [str(i) for i in range(10)]
    assert after.resume_offset("transactions", 0) == 11


def test_segments_are_cut_by_size_and_by_age(tmp_path: Path) -> None:
    clock = Clock()
    archive = Archive(tmp_path, max_events=4, max_age_s=30, monotonic=clock)
    archive.add([tx(i, T0) for i in range(3)])
    assert archive.segments == [] and archive.buffered_events == 3
    archive.add([tx(3, T0)])
    assert len(archive.segments) == 1 and archive.buffered_events == 0

    archive.add([tx(4, T0)])
    clock.now = 29.0
    assert archive.flush_if_due() == []
    clock.now = 31.0
    assert len(archive.flush_if_due()) == 1
    assert archive.flush_if_due() == []  # nothing buffered, nothing written
    assert archive.state().transactions == 5 and archive.state().segments == 2


def test_label_clock_is_the_slowest_partitions_newest_label(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    assert archive.state().label_clock is None
    archive.add([label(1, T0, T0 + timedelta(days=7), partition=0, offset=0),
                 label(2, T0, T0 + timedelta(days=9), partition=0, offset=1),
                 label(3, T0, T0 + timedelta(days=8), partition=1, offset=0)])
    archive.add([tx(5, T0 + timedelta(days=3))])
    archive.flush()
    state = Archive(tmp_path).state()
    assert state.label_clock == T0 + timedelta(days=8)
    assert state.event_clock == T0 + timedelta(days=3)
    assert state.labels == 3


def test_retention_deletes_old_segments_but_keeps_their_offsets(tmp_path: Path) -> None:
    archive = Archive(tmp_path, retention=timedelta(days=10))
    archive.add([tx(0, T0), tx(1, T0 + timedelta(hours=1), partition=1)])
    archive.flush()
    archive.add([tx(2, T0 + timedelta(days=20), offset=7)])
    archive.flush()
    assert [s.seq for s in archive.segments] == [2]
    reopened = Archive(tmp_path, retention=timedelta(days=10))
    assert reopened.read(TRANSACTIONS)["transaction_id"].tolist() == ["2"]
    assert reopened.resume_offset("transactions", 1) == 2  # from the retired segment
    assert reopened.resume_offset("transactions", 0) == 8
