"""Replay of a feature set's own event schema (issue #20): which fields go out, and refusals.

Without a broker (a recording sink): the handbook's events are built exactly as
before, a rich data set under the payments example's schema carries every rich
field, and a data set that cannot give the schema's events is refused, naming the
field, before anything is sent. ``test_replay_schema_kafka.py`` does it through a
real broker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rtml_common.events import Label, Transaction
from rtml_common.handbook import TRANSACTION_SCHEMA
from rtml_common.kafka.producer import FailedDelivery
from rtml_common.schema import EventSchema, Field, FieldType
from rtml_common.schema_models import event_model, lean_decoder
from rtml_common.serde import encode, header_value
from rtml_features.repo import load_repo
from rtml_simulator import SimulationConfig, read_transactions, simulate, write_dataset
from rtml_simulator.config import RichMode
from rtml_simulator.io import TRANSACTIONS_FILE
from rtml_simulator.replay import (
    LABEL,
    TRANSACTION,
    ReplayOptions,
    ReplaySchemaError,
    field_columns,
    plan_replay,
    replay,
)

PAYMENTS_REPO = Path(__file__).resolve().parents[3] / "examples" / "feature_repos" / "payments"
CONFIG = SimulationConfig(n_customers=150, n_terminals=300, n_days=12, radius=10.0, seed=9)


def payment_schema() -> EventSchema:
    return load_repo(PAYMENTS_REPO).schemas["payment"]


class Recorder:
    """A sink keeping every record (topic, key, value, headers)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes | None]]]]
        self.records = []

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None,
                 headers: Sequence[tuple[str, bytes | None]] | None = None) -> None:
        self.records.append((topic, key, value, list(headers or [])))

    def failures(self) -> list[FailedDelivery]:
        return []

    def flush(self, timeout_s: float | None = None) -> None:
        return None


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(simulate(CONFIG), tmp_path_factory.mktemp("replay-plain"))


@pytest.fixture(scope="module")
def rich_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(simulate(replace(CONFIG, rich=RichMode())),
                         tmp_path_factory.mktemp("replay-rich"))


def test_field_columns_map_roles_and_names() -> None:
    assert field_columns(TRANSACTION_SCHEMA) == {
        "transaction_id": "transaction_id", "event_time": "tx_datetime",
        "customer_id": "customer_id", "terminal_id": "terminal_id", "amount": "tx_amount",
        "currency": "currency"}
    assert field_columns(payment_schema())["merchant_category"] == "merchant_category"


def test_handbook_records_are_the_handbook_transactions(plain_dir: Path) -> None:
    options = ReplayOptions(days=3)
    sink = Recorder()
    replay(plain_dir, options, producer=sink)
    table = read_transactions(plain_dir)
    plan = plan_replay(table, options)
    assert options.transactions_topic == "transactions"
    assert len(sink.records) == len(plan)
    row = int(plan.rows[plan.kinds == TRANSACTION][0])
    first = next(r for r in sink.records if r[0] == "transactions")
    expected = Transaction(
        transaction_id=str(table.column("transaction_id")[row].as_py()),
        event_time=table.column("tx_datetime")[row].as_py(),
        customer_id=str(table.column("customer_id")[row].as_py()),
        terminal_id=str(table.column("terminal_id")[row].as_py()),
        amount=table.column("tx_amount")[row].as_py())
    assert first[2] == encode(expected)  # the same bytes as the hand-built event
    assert first[1] == expected.customer_id.encode()
    assert header_value(first[3], "rtml-event-type") == b"Transaction"
    assert set(orjson.loads(first[2] or b"")) == set(TRANSACTION_SCHEMA.names)


def test_rich_data_replays_payment_events_with_every_field(rich_dir: Path) -> None:
    schema = payment_schema()
    options = ReplayOptions(days=4, schema=schema, label_delay=timedelta(days=1))
    sink = Recorder()
    report = replay(rich_dir, options, producer=sink)
    table = read_transactions(rich_dir)
    plan = plan_replay(table, options)
    assert report.topics == {"transactions": plan.n_transactions, "labels": plan.n_labels}
    decode = lean_decoder(schema)
    model = event_model(schema)
    payments = [r for r in sink.records if r[0] == "transactions"]
    assert len(payments) == plan.n_transactions
    rows = {str(t): i for i, t in enumerate(table.column("transaction_id").to_pylist())}
    columns = {name: table.column(name).to_pylist()
               for name in ("device_id", "ip_address", "merchant_category", "country",
                            "channel", "customer_id", "tx_amount")}
    absent_ip = 0
    for _, key, value, headers in payments:
        event = decode(value, headers)
        assert type(event) is model and header_value(headers, "rtml-event-type") == b"Payment"
        row = rows[event.transaction_id]
        assert key == str(columns["customer_id"][row]).encode()
        for name in ("device_id", "ip_address", "merchant_category", "country", "channel"):
            assert getattr(event, name) == columns[name][row], name
        assert event.amount == columns["tx_amount"][row]
        absent_ip += event.ip_address is None
    assert 0 < absent_ip < len(payments)  # card-present payments have no IP address
    labels = [r for r in sink.records if r[0] == "labels"]
    assert len(labels) == int((plan.kinds == LABEL).sum())
    assert all(header_value(h, "rtml-event-type") == b"Label" for _, _, _, h in labels)
    assert isinstance(Label.model_validate_json(labels[0][2]), Label)


def test_a_missing_required_field_is_refused_before_sending(plain_dir: Path) -> None:
    sink = Recorder()
    with pytest.raises(ReplaySchemaError, match=r"field 'device_id' is required but .* no "
                                                r"column 'device_id'.*--rich"):
        replay(plain_dir, ReplayOptions(schema=payment_schema()), producer=sink)
    assert sink.records == []


def _with_column(source: Path, target: Path, name: str, values: pa.Array) -> Path:
    target.mkdir()
    table = read_transactions(source)
    index = table.column_names.index(name)
    pq.write_table(table.set_column(index, name, values), target / TRANSACTIONS_FILE)
    return target


def test_nulls_and_undeclared_categories_are_refused(rich_dir: Path, tmp_path: Path) -> None:
    table = read_transactions(rich_dir)
    n = table.num_rows
    devices = pa.array([None, *table.column("device_id").to_pylist()[1:]], pa.string())
    nulls = _with_column(rich_dir, tmp_path / "nulls", "device_id", devices)
    sink = Recorder()
    with pytest.raises(ReplaySchemaError, match="field 'device_id' is required but column "
                                                "'device_id' has 1 null values"):
        replay(nulls, ReplayOptions(schema=payment_schema()), producer=sink)
    channels = pa.array(["pos"] * (n - 1) + ["kiosk"], pa.string())
    unknown = _with_column(rich_dir, tmp_path / "unknown", "channel", channels)
    with pytest.raises(ReplaySchemaError, match=r"field 'channel': column 'channel' holds "
                                                r"\['kiosk'\], not among"):
        replay(unknown, ReplayOptions(schema=payment_schema()), producer=sink)
    assert sink.records == []


def test_a_schema_with_its_own_names_and_topic(rich_dir: Path) -> None:
    schema = EventSchema(
        name="card_payment", topic="card-payments", id_field="payment_id", event_time="at",
        partition_key="device_id",
        fields=[Field("payment_id", FieldType.STRING), Field("at", FieldType.TIMESTAMP),
                Field("device_id", FieldType.STRING), Field("amount", FieldType.NUMBER),
                Field("country", FieldType.STRING, required=False, default="BE"),
                Field("promo_code", FieldType.STRING, required=False)])
    options = ReplayOptions(days=2, schema=schema)
    assert options.transactions_topic == "card-payments"
    sink = Recorder()
    replay(rich_dir, options, producer=sink)
    payments = [r for r in sink.records if r[0] == "card-payments"]
    assert payments
    for _, key, value, _ in payments[:50]:
        record = orjson.loads(value or b"")
        assert set(record) == {"payment_id", "at", "device_id", "amount", "country",
                               "promo_code"}
        assert record["promo_code"] is None  # not in the file: left out (None)
        assert key == record["device_id"].encode()


def test_every_field_type_with_nulls_is_carried(tmp_path: Path) -> None:
    """Integers, booleans, numbers from integers, timestamps and id strings, nulls included."""
    table = pa.table({
        "transaction_id": pa.array([1, 2], pa.int64()),
        "tx_datetime": pa.array([0, 1_000_000], pa.timestamp("us", tz="UTC")),
        "customer_id": pa.array([5, 6], pa.int64()),
        "terminal_id": pa.array([1, 1], pa.int64()),
        "tx_amount": pa.array([1.5, 2.0]),
        "tx_time_seconds": pa.array([0, 1], pa.int64()),
        "tx_time_days": pa.array([0, 0], pa.int32()),
        "tx_fraud": pa.array([0, 1], pa.int8()),
        "tx_fraud_scenario": pa.array([0, 1], pa.int8()),
        "flag": pa.array([True, None]), "n": pa.array([3, None], pa.int64()),
        "seen": pa.array([None, 5], pa.timestamp("us", tz="UTC")),
        "score": pa.array([7, 8], pa.int32()), "ref": pa.array([None, 9], pa.int64())})
    (tmp_path / "d").mkdir()
    pq.write_table(table, tmp_path / "d" / TRANSACTIONS_FILE)
    schema = EventSchema(
        name="typed", topic="typed", id_field="transaction_id", event_time="at",
        partition_key="customer_id",
        fields=[Field("transaction_id", FieldType.STRING), Field("at", FieldType.TIMESTAMP),
                Field("customer_id", FieldType.STRING),
                Field("flag", FieldType.BOOLEAN, required=False),
                Field("n", FieldType.INTEGER, required=False),
                Field("score", FieldType.NUMBER),
                Field("seen", FieldType.TIMESTAMP, required=False),
                Field("ref", FieldType.STRING, required=False)])
    sink = Recorder()
    replay(tmp_path / "d", ReplayOptions(schema=schema, label_delay=timedelta(0)), producer=sink)
    sent = [orjson.loads(v or b"") for topic, _, v, _ in sink.records if topic == "typed"]
    assert sent == [
        {"transaction_id": "1", "at": "1970-01-01T00:00:00+00:00", "customer_id": "5",
         "flag": True, "n": 3, "score": 7.0, "seen": None, "ref": None},
        {"transaction_id": "2", "at": "1970-01-01T00:00:01+00:00", "customer_id": "6",
         "flag": None, "n": None, "score": 8.0, "seen": "1970-01-01T00:00:00.000005+00:00",
         "ref": "9"}]
