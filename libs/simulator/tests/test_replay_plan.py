"""Replay semantics without a broker: event order, label timing, slices, pacing, failures."""

from __future__ import annotations

import doctest
import importlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from rtml_common.events import Label, Transaction
from rtml_common.kafka.producer import DeliveryError, FailedDelivery
from rtml_common.serde import EVENT_TYPE_HEADER, decode, header_value
from rtml_simulator import SimulationConfig, read_transactions, simulate, write_dataset
from rtml_simulator.pacing import Pace, Pacer
from rtml_simulator.replay import BATCH, LABEL, TRANSACTION, ReplayOptions, plan_replay, replay

DAY_US = 86_400 * 1_000_000
CONFIG = SimulationConfig(n_customers=150, n_terminals=300, n_days=30, radius=9.0, seed=3)
START_US = int(datetime(2018, 4, 1, tzinfo=UTC).timestamp()) * 1_000_000


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(simulate(CONFIG), tmp_path_factory.mktemp("replay-data"))


@pytest.fixture(scope="module")
def table(data_dir: Path) -> pa.Table:
    return read_transactions(data_dir)


def _events(plan: object) -> list[tuple[int, int]]:
    return list(zip(plan.kinds.tolist(), plan.rows.tolist(), strict=True))  # type: ignore[attr-defined]


def test_a_slice_sends_its_days_and_the_labels_due_in_it(table: pa.Table) -> None:
    options = ReplayOptions(start_day=10, days=5, label_delay=timedelta(days=2))
    plan = plan_replay(table, options)
    days = table.column("tx_time_days").to_numpy()
    times = table.column("tx_datetime").cast(pa.int64()).to_numpy()
    expected_tx = np.flatnonzero((days >= 10) & (days < 15))
    assert plan.slice_start_us == START_US + 10 * DAY_US
    assert plan.slice_end_us == START_US + 15 * DAY_US

    tx_rows = plan.rows[plan.kinds == TRANSACTION]
    assert np.array_equal(tx_rows, expected_tx)
    label_rows = plan.rows[plan.kinds == LABEL]
    due = times + 2 * DAY_US
    expected_labels = np.flatnonzero((due >= plan.slice_start_us) & (due < plan.slice_end_us))
    assert np.array_equal(np.sort(label_rows), expected_labels)
    assert plan.n_earlier_labels == int((expected_labels < expected_tx[0]).sum()) > 0
    assert plan.n_withheld_labels == int((due[expected_tx] >= plan.slice_end_us).sum()) > 0
    # One event-time clock: never goes back.
    assert (np.diff(plan.times_us) >= 0).all()
    assert plan.n_transactions + plan.n_labels == len(plan)


def test_consecutive_slices_compose_into_the_whole(table: pa.Table) -> None:
    delay = timedelta(days=3)
    whole = plan_replay(table, ReplayOptions(start_day=0, days=14, label_delay=delay))
    first = plan_replay(table, ReplayOptions(start_day=0, days=7, label_delay=delay))
    second = plan_replay(table, ReplayOptions(start_day=7, days=7, label_delay=delay))
    assert _events(first) + _events(second) == _events(whole)


def test_without_earlier_labels_only_the_slice_is_labelled(table: pa.Table) -> None:
    options = ReplayOptions(start_day=5, days=10, label_delay=timedelta(days=4),
                            earlier_labels=False)
    plan = plan_replay(table, options)
    tx_rows = set(plan.rows[plan.kinds == TRANSACTION].tolist())
    label_rows = plan.rows[plan.kinds == LABEL].tolist()
    assert set(label_rows) <= tx_rows and plan.n_earlier_labels == 0
    assert len(label_rows) + plan.n_withheld_labels == plan.n_transactions


def test_pending_labels_go_out_at_the_end_only_when_asked(table: pa.Table) -> None:
    options = ReplayOptions(start_day=5, days=10, label_delay=timedelta(days=4),
                            earlier_labels=False, pending_labels=True)
    plan = plan_replay(table, options)
    assert plan.n_withheld_labels == 0 and plan.n_pending_labels > 0
    tail = slice(len(plan) - plan.n_pending_labels, None)
    assert (plan.kinds[tail] == LABEL).all()
    assert (plan.times_us[tail] >= plan.slice_end_us).all()
    assert (plan.times_us[: plan.n_paced] < plan.slice_end_us).all()
    # Every transaction of the slice gets exactly one label.
    assert sorted(plan.rows[plan.kinds == LABEL].tolist()) == sorted(
        plan.rows[plan.kinds == TRANSACTION].tolist())


def test_limit_stops_the_clock_at_the_last_transaction(table: pa.Table) -> None:
    plan = plan_replay(table, ReplayOptions(start_day=3, limit=500,
                                            label_delay=timedelta(hours=6)))
    tx_times = plan.times_us[plan.kinds == TRANSACTION]
    assert plan.n_transactions == 500
    assert plan.slice_end_us == tx_times[-1] + 1
    assert (plan.times_us[plan.kinds == LABEL] <= tx_times[-1]).all()
    assert plan.n_labels > 0


def test_a_zero_delay_label_follows_its_transaction(table: pa.Table) -> None:
    plan = plan_replay(table, ReplayOptions(start_day=0, days=2, label_delay=timedelta(0)))
    position = {}
    for index, (kind, row) in enumerate(_events(plan)):
        if kind == TRANSACTION:
            position[row] = index
        else:
            assert position[row] < index
    assert plan.n_labels == plan.n_transactions


class RecordingSink:
    """Stands in for EventProducer: records what would be produced."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes | None]]]]
        self.records = []
        self.fail_after = fail_after
        self.flushes = 0

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None,
                 headers: Sequence[tuple[str, bytes | None]] | None = None) -> None:
        self.records.append((topic, key, value, list(headers or ())))

    def failures(self) -> list[FailedDelivery]:
        if self.fail_after is not None and len(self.records) > self.fail_after:
            return [FailedDelivery("transactions", b"1", "Broker: boom")]
        return []

    def flush(self, timeout_s: float | None = None) -> None:
        self.flushes += 1
        if self.failures():
            raise DeliveryError(self.failures())


def test_replay_produces_valid_keyed_events_in_event_time_order(data_dir: Path,
                                                                table: pa.Table) -> None:
    sink = RecordingSink()
    options = ReplayOptions(start_day=8, days=4, label_delay=timedelta(days=1),
                            transactions_topic="tx-test", labels_topic="labels-test")
    report = replay(data_dir, options, producer=sink)
    plan = plan_replay(table, options)
    assert report.transactions == plan.n_transactions and report.labels == plan.n_labels
    assert report.topics == {"tx-test": plan.n_transactions, "labels-test": plan.n_labels}
    assert len(sink.records) == len(plan) and sink.flushes >= 1

    fraud = table.column("tx_fraud").to_numpy()
    amounts = table.column("tx_amount").to_numpy()
    clock = datetime.min.replace(tzinfo=UTC)
    for (topic, key, value, headers), row in zip(sink.records, plan.rows.tolist(), strict=True):
        if topic == "tx-test":
            assert header_value(headers, EVENT_TYPE_HEADER) == b"Transaction"
            tx = decode(value, Transaction, headers)
            assert tx.transaction_id == str(row) and tx.amount == amounts[row]
            assert key == tx.customer_id.encode()
            when = tx.event_time
        else:
            label = decode(value, Label, headers)
            assert label.transaction_id == str(row) and label.is_fraud == bool(fraud[row])
            assert label.labeled_at - label.transaction_time == timedelta(days=1)
            assert key == label.customer_id.encode()
            when = label.labeled_at
        assert when >= clock
        clock = when
    assert report.slice_start == datetime(2018, 4, 9, tzinfo=UTC)
    assert report.events_per_second > 0


def test_replay_stops_loudly_on_delivery_failures(data_dir: Path) -> None:
    sink = RecordingSink(fail_after=10)
    with pytest.raises(DeliveryError, match="boom"):
        replay(data_dir, ReplayOptions(), producer=sink)
    assert len(sink.records) == BATCH  # stopped after the first batch, not at the end


def test_pacer_targets_are_absolute_and_follow_the_mode() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    speedup = Pacer(Pace.speedup(3600), event_time_start=1_000.0, clock=lambda: now[0],
                    sleep=sleep)
    speedup.wait(0, 1_000.0 + 7_200)  # two event-hours -> two wall seconds
    assert now[0] == pytest.approx(102.0)
    now[0] += 5.0  # we fell behind: no sleep, and no drift added later
    assert speedup.wait(1, 1_000.0 + 10_800) == 0.0
    assert speedup.wait(2, 1_000.0 + 36_000) == pytest.approx(10.0 - 7.0)

    now[0] = 0.0
    rate = Pacer(Pace.rate(4), event_time_start=0.0, clock=lambda: now[0], sleep=sleep)
    for i in range(9):
        rate.wait(i, 0.0)
    assert now[0] == pytest.approx(2.0)
    assert Pacer(Pace.max_speed(), 0.0, clock=lambda: now[0], sleep=sleep).wait(10**6, 1e9) == 0
    with pytest.raises(ValueError):
        Pace.rate(0)


@pytest.mark.parametrize("name", ["rtml_simulator.config", "rtml_simulator.seeding",
                                  "rtml_simulator.profiles", "rtml_simulator.table",
                                  "rtml_simulator.drift", "rtml_simulator.simulate",
                                  "rtml_simulator.pacing"])
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_out_of_order_option_delays_a_seeded_fraction_within_the_bound(tmp_path: Path) -> None:
    """5 % of transactions are sent after events up to the bound later, never further."""
    write_dataset(simulate(SimulationConfig(n_customers=3000, n_terminals=3000, n_days=3,
                                            seed=5)), tmp_path)
    table = read_transactions(tmp_path)
    bound = timedelta(minutes=4)
    plain = plan_replay(table, ReplayOptions(days=3))
    options = ReplayOptions(days=3, out_of_order_fraction=0.05, out_of_order_max=bound,
                            out_of_order_seed=1)
    shuffled = plan_replay(table, options)
    assert sorted(plain.rows.tolist()) == sorted(shuffled.rows.tolist())  # nothing lost
    times = shuffled.times_us[shuffled.kinds == TRANSACTION]
    # A transaction is out of order when a transaction sent before it is stamped later.
    behind = np.maximum.accumulate(times) - times
    assert 0.03 < float((behind > 0).mean()) < 0.07
    assert int(behind.max()) <= bound // timedelta(microseconds=1)
    assert plan_replay(table, options).rows.tolist() == shuffled.rows.tolist()  # seeded
