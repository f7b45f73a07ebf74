"""Replay a simulated data set to Kafka: transactions now, their labels later.

A real payment system learns whether a payment was fraud days or weeks after
it happened (chargebacks, investigations). The replay reproduces that in
*event time*: a transaction's label becomes available at ``tx_time + delay``
and is produced once the replay's event-time clock reaches that instant, so
the ``transactions`` and ``labels`` topics interleave exactly as they would
in production. Features such as terminal risk over ``[t - (n + d), t - d]``
only ever see labels that would already have arrived.

The replay covers a *slice* of event time ``[slice_start, slice_end)``:

* transactions: those of days ``[start_day, start_day + days)``, or the
  first ``limit`` of them (then the slice ends just after the last one sent);
* labels: every label whose availability falls inside the slice — including
  labels of transactions *before* the slice (``earlier_labels``, on by
  default), so replaying days 0-6 and then days 7-13 produces exactly what
  replaying days 0-13 does, and a stream that starts mid-data still gets the
  labels its delayed features need;
* labels of sliced transactions that become available only after the slice
  end are withheld, unless ``pending_labels`` asks to publish them at the end
  (unpaced). Publishing them and then replaying the next slice duplicates
  them; consumers dedupe by transaction id anyway (at-least-once).

**Events of a schema.** The payments go out as events of
``options.schema`` (an :class:`~rtml_common.schema.EventSchema`, the served
feature set's: the handbook's ``transaction`` by default), built and validated
by its generated model (:func:`rtml_common.schema_models.event_model`) on the
schema's topic, keyed by its partition key. The file's columns fill the
schema's fields (:func:`field_columns`): the id field from ``transaction_id``,
the event-time field from ``tx_datetime``, ``amount`` from ``tx_amount``, and
any other field from the column of its name (rich mode's ``device_id``,
``ip_address``, ``merchant_category``, ``country``, ``channel``). An optional
field the file lacks is left out (its default), a null of an optional one too;
a required field the file lacks, one with nulls or a category the schema does
not declare is refused (:class:`ReplaySchemaError`, naming the field) before
anything is sent. Labels are the handbook's ``Label`` on the labels topic.

Ties in event time: a transaction goes before a label, then rows in
transaction-id order, so with ``label_delay = 0`` a label never precedes its
transaction. Each payment is keyed by the schema's partition key (customer id
for the handbook's and the payments example's) and each label by customer id
(:mod:`rtml_common.topics`), so a customer's events keep their order within
their partition.

Nothing is lost silently: delivery failures are checked after every batch
and the final ``flush`` raises :class:`rtml_common.kafka.producer.DeliveryError`
if any record was not acknowledged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rtml_common.config import KafkaSettings
from rtml_common.events import Event, Label
from rtml_common.handbook import TRANSACTION_SCHEMA
from rtml_common.kafka.admin import ensure_topics
from rtml_common.kafka.producer import EventProducer, FailedDelivery
from rtml_common.schema import EventSchema, Field, FieldType
from rtml_common.schema_models import event_model
from rtml_common.serde import encode, headers_for
from rtml_common.topics import spec_for_event
from rtml_simulator.io import TRANSACTIONS_FILE, read_transactions
from rtml_simulator.pacing import Pace, Pacer

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TRANSACTION, LABEL = 0, 1

#: Columns the replay reads whatever the schema (plan, labels).
COLUMNS = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "tx_amount",
           "tx_time_seconds", "tx_time_days", "tx_fraud", "tx_fraud_scenario")
#: The file's columns of the fields the handbook names differently.
RENAMED = {"amount": "tx_amount"}


class ReplaySchemaError(ValueError):
    """The data set cannot give the schema's events; the message names the field and why."""

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay, how fast, and where to."""

    start_day: int = 0
    #: Number of days from ``start_day``; None: to the end of the data.
    days: int | None = None
    #: At most this many transactions (labels are counted separately).
    limit: int | None = None
    label_delay: timedelta = timedelta(days=7)
    pending_labels: bool = False
    earlier_labels: bool = True
    pace: Pace = field(default_factory=Pace.max_speed)
    #: The payments' event schema (the served feature set's); the handbook's by default.
    schema: EventSchema = TRANSACTION_SCHEMA
    #: Topic of the payments; ``""``: the schema's topic.
    transactions_topic: str = ""
    labels_topic: str = spec_for_event(Label).name
    create_topics: bool = True
    #: For ``create_topics``: -1 = broker default; 1 for a one-broker stack.
    replication_factor: int = -1
    #: Fraction of transactions delivered late, to exercise out-of-order handling:
    #: each is sent as if its event time were up to ``out_of_order_max`` later.
    out_of_order_fraction: float = 0.0
    out_of_order_max: timedelta = timedelta(minutes=4)
    #: Seeds which transactions are delayed and by how much (reproducible runs).
    out_of_order_seed: int = 0

    def __post_init__(self) -> None:
        if not self.transactions_topic:
            object.__setattr__(self, "transactions_topic", self.schema.topic)
        if self.start_day < 0:
            raise ValueError("start_day must be >= 0")
        if self.days is not None and self.days < 1:
            raise ValueError("days must be >= 1")
        if self.limit is not None and self.limit < 0:
            raise ValueError("limit must be >= 0")
        if self.label_delay < timedelta(0):
            raise ValueError("label_delay must be >= 0")
        if not 0.0 <= self.out_of_order_fraction <= 1.0:
            raise ValueError("out_of_order_fraction must be in [0, 1]")
        if self.out_of_order_max < timedelta(0):
            raise ValueError("out_of_order_max must be >= 0")

    @property
    def label_delay_us(self) -> int:
        return self.label_delay // timedelta(microseconds=1)


@dataclass(frozen=True)
class ReplayPlan:
    """Which rows go out as what, in send order (pure: no Kafka involved)."""

    #: ``TRANSACTION`` or ``LABEL`` per event, in send order.
    kinds: npt.NDArray[np.int8]
    #: Row of the transactions table per event.
    rows: IntArray
    #: Event time per event, microseconds since 1970 (label: its availability time).
    times_us: IntArray
    slice_start_us: int
    slice_end_us: int
    n_transactions: int
    n_labels: int
    n_earlier_labels: int
    n_pending_labels: int
    n_withheld_labels: int

    def __len__(self) -> int:
        return len(self.kinds)

    @property
    def n_paced(self) -> int:
        """Events sent under rate control (pending labels go out unpaced at the end)."""
        return len(self.kinds) - self.n_pending_labels


def plan_replay(table: pa.Table, options: ReplayOptions) -> ReplayPlan:
    """Decide the events of a replay from the transactions table (event-time sorted)."""
    times = _int64(table.column("tx_datetime"))
    day = table.column("tx_time_days").to_numpy().astype(np.int64)
    n = len(times)
    # Midnight of the data set's start date, in microseconds since 1970.
    origin = int(times[0] - table.column("tx_time_seconds")[0].as_py() * US_PER_SECOND) if n else 0

    first = int(np.searchsorted(day, options.start_day, "left"))
    natural_end = (
        int(np.searchsorted(day, options.start_day + options.days, "left"))
        if options.days is not None else n
    )
    end = natural_end if options.limit is None else min(natural_end, first + options.limit)
    slice_start = origin + options.start_day * US_PER_DAY
    if end < natural_end:  # cut by the limit: the clock stops at the last transaction sent
        slice_end = int(times[end - 1]) + 1 if end > first else slice_start
    elif options.days is not None:
        slice_end = origin + (options.start_day + options.days) * US_PER_DAY
    else:
        slice_end = origin + (int(day[-1]) + 1) * US_PER_DAY if n else slice_start

    delay = options.label_delay_us
    lo = int(np.searchsorted(times, slice_start - delay, "left"))
    hi = int(np.searchsorted(times, slice_end - delay, "left"))
    label_lo = lo if options.earlier_labels else max(lo, first)
    label_hi = min(hi, end)
    label_rows = np.arange(label_lo, max(label_lo, label_hi), dtype=np.int64)
    pending = np.arange(max(hi, first), end, dtype=np.int64)

    tx_rows = np.arange(first, end, dtype=np.int64)
    all_times = np.concatenate([times[tx_rows], times[label_rows] + delay])
    kinds = np.concatenate([np.full(len(tx_rows), TRANSACTION, np.int8),
                            np.full(len(label_rows), LABEL, np.int8)])
    rows = np.concatenate([tx_rows, label_rows])
    send_times = all_times.copy()
    if options.out_of_order_fraction > 0 and len(tx_rows):
        # Delay a seeded sample of transactions: sent later than events up to
        # out_of_order_max after them, so consumers see them out of order.
        rng = np.random.default_rng(options.out_of_order_seed)
        late = rng.random(len(tx_rows)) < options.out_of_order_fraction
        max_us = options.out_of_order_max // timedelta(microseconds=1)
        send_times[: len(tx_rows)][late] += rng.integers(1, max(2, max_us + 1), int(late.sum()))
    order = np.lexsort((rows, kinds, send_times))
    kinds, rows, all_times = kinds[order], rows[order], all_times[order]
    if options.pending_labels and len(pending):
        kinds = np.concatenate([kinds, np.full(len(pending), LABEL, np.int8)])
        rows = np.concatenate([rows, pending])
        all_times = np.concatenate([all_times, times[pending] + delay])

    return ReplayPlan(
        kinds=kinds, rows=rows, times_us=all_times,
        slice_start_us=slice_start, slice_end_us=slice_end,
        n_transactions=len(tx_rows),
        n_labels=len(label_rows) + (len(pending) if options.pending_labels else 0),
        n_earlier_labels=int(max(0, min(first, label_hi) - label_lo)),
        n_pending_labels=len(pending) if options.pending_labels else 0,
        n_withheld_labels=0 if options.pending_labels else len(pending),
    )


def _int64(column: pa.ChunkedArray) -> IntArray:
    """Raw int64 values of a (timestamp) column, without datetime objects."""
    return column.cast(pa.int64()).to_numpy().astype(np.int64)


def to_datetime(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True)
class ReplayReport:
    """What a replay did; ``topics`` counts records acknowledged per topic."""

    transactions: int
    labels: int
    earlier_labels: int
    pending_labels: int
    withheld_labels: int
    seconds: float
    events_per_second: float
    slice_start: datetime
    slice_end: datetime
    pace: str
    topics: dict[str, int]

    @property
    def events(self) -> int:
        return self.transactions + self.labels


class RecordSink(Protocol):
    """The part of :class:`rtml_common.kafka.producer.EventProducer` the replay uses."""

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None,
                 headers: Sequence[tuple[str, bytes | None]] | None = None) -> None: ...

    def failures(self) -> list[FailedDelivery]: ...

    def flush(self, timeout_s: float | None = None) -> None: ...


def field_columns(schema: EventSchema) -> dict[str, str]:
    """Each field of ``schema`` -> the transactions file's column that fills it.

    The id field reads ``transaction_id``, the event-time field ``tx_datetime``,
    ``amount`` reads ``tx_amount``; any other field the column of its own name.
    """
    columns = {}
    for declared in schema.fields:
        if declared.name == schema.id_field:
            columns[declared.name] = "transaction_id"
        elif declared.name == schema.event_time:
            columns[declared.name] = "tx_datetime"
        else:
            columns[declared.name] = RENAMED.get(declared.name, declared.name)
    return columns


def _fits(kind: FieldType, column: pa.DataType) -> bool:
    """Whether a column of Arrow type ``column`` can fill a field of type ``kind``."""
    if kind is FieldType.STRING:  # ids are int64 in the file, strings on the wire
        return bool(pa.types.is_string(column) or pa.types.is_large_string(column)
                    or pa.types.is_integer(column))
    if kind is FieldType.NUMBER:
        return bool(pa.types.is_floating(column) or pa.types.is_integer(column))
    if kind is FieldType.INTEGER:
        return bool(pa.types.is_integer(column))
    if kind is FieldType.BOOLEAN:
        return bool(pa.types.is_boolean(column))
    return bool(pa.types.is_timestamp(column)) and column.tz is not None


def check_table(table: pa.Table, schema: EventSchema, source: str = "the data set") -> None:
    """Refuse (:class:`ReplaySchemaError`) a table that cannot give ``schema``'s events.

    Checked before anything is sent: every required field has its column, without nulls;
    each present column has a type the field takes, only declared categories and values
    within the field's bounds. The message names the field and the column.
    """
    for declared, column in ((schema.field(n), c) for n, c in field_columns(schema).items()):
        where = f"schema {schema.name!r}: field {declared.name!r}"
        if column not in table.column_names:
            if declared.required:
                hint = (" (a rich-mode column: simulate with `rtml simulate --rich`)"
                        if column in _RICH_COLUMNS else "")
                raise ReplaySchemaError(f"{where} is required but {source} has no column "
                                        f"{column!r}{hint}")
            continue
        values = table.column(column)
        if not _fits(declared.type, values.type):
            raise ReplaySchemaError(f"{where} ({declared.type}) cannot be read from column "
                                    f"{column!r} of type {values.type}")
        if declared.required and values.null_count:
            raise ReplaySchemaError(f"{where} is required but column {column!r} has "
                                    f"{values.null_count} null values")
        _check_values(declared, column, values, where)


def _check_values(declared: Field, column: str, values: pa.ChunkedArray, where: str) -> None:
    if declared.categories is not None:
        unknown = sorted(set(pc.unique(values).drop_null().to_pylist())
                         - set(declared.categories))
        if unknown:
            raise ReplaySchemaError(f"{where}: column {column!r} holds {unknown[:5]}, not "
                                    f"among the declared categories {list(declared.categories)}")
    if declared.type is FieldType.STRING and declared.categories is None and len(values):
        lengths = pc.min_max(pc.utf8_length(values.cast(pa.string())))
        low, high = lengths["min"].as_py(), lengths["max"].as_py()
        if low is not None and (low < declared.min_length or (
                declared.max_length is not None and high > declared.max_length)):
            raise ReplaySchemaError(f"{where}: column {column!r} holds values of {low} to "
                                    f"{high} characters, the field takes {declared.min_length} "
                                    f"to {declared.max_length}")
    if declared.type in (FieldType.NUMBER, FieldType.INTEGER) and len(values):
        bounds = pc.min_max(values)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low is not None and ((declared.minimum is not None and low < declared.minimum) or
                                (declared.maximum is not None and high > declared.maximum)):
            raise ReplaySchemaError(f"{where}: column {column!r} ranges over [{low}, {high}], "
                                    f"outside the field's bounds [{declared.minimum}, "
                                    f"{declared.maximum}]")


#: Rich mode's columns (named in the error when a schema needs one a plain data set lacks).
_RICH_COLUMNS = ("device_id", "ip_address", "merchant_category", "country", "channel")


def columns_to_read(data_dir: Path | str, schema: EventSchema) -> list[str]:
    """:data:`COLUMNS` and the columns of ``schema``'s fields the file has."""
    path = Path(data_dir) / TRANSACTIONS_FILE
    present = set(pq.read_schema(path).names) if path.exists() else set()
    wanted = [c for c in field_columns(schema).values() if c in present and c not in COLUMNS]
    return [*COLUMNS, *dict.fromkeys(wanted)]


class _Converter:
    """One field's values for a batch of rows, as the Python values its model takes."""

    def __init__(self, declared: Field, column: pa.ChunkedArray) -> None:
        self.kind = declared.type
        #: Strings and columns with nulls stay in Arrow (a batch's are taken as Python
        #: objects, None for a null): a whole file's strings as Python objects would cost
        #: ~100 bytes each; null-free numbers and timestamps are read once with numpy.
        self.arrow: pa.Array | None = None
        self.values: npt.NDArray[Any] = np.empty(0)
        text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        self.text = bool(text)
        if text or column.null_count:
            self.arrow = column.combine_chunks()
        elif self.kind is FieldType.TIMESTAMP:
            self.values = _int64(column)
        else:
            self.values = column.to_numpy()
        self.stringify = pa.types.is_integer(column.type) and self.kind is FieldType.STRING
        self.floats = pa.types.is_integer(column.type) and self.kind is FieldType.NUMBER

    def take(self, rows: IntArray) -> list[Any]:
        if self.arrow is not None:  # datetimes come out timezone-aware, nulls as None
            taken = self.arrow.take(rows)
            if self.text:  # strings: numpy's conversion is the faster one (None for null)
                return taken.to_numpy(zero_copy_only=False).tolist()
            values = taken.to_pylist()
            if self.stringify:
                return [None if v is None else str(v) for v in values]
            if self.floats:
                return [None if v is None else float(v) for v in values]
            return values
        values = self.values[rows].tolist()
        if self.kind is FieldType.TIMESTAMP:
            return [to_datetime(v) for v in values]
        if self.stringify:
            return [str(v) for v in values]
        if self.floats:
            return [float(v) for v in values]
        return values


class _EventFactory:
    """Builds validated events for plan rows, one batch of rows at a time.

    Payments are events of the schema's generated model, every field the table has
    filled; labels the handbook's ``Label``.
    """

    def __init__(self, table: pa.Table, delay_us: int,
                 schema: EventSchema = TRANSACTION_SCHEMA) -> None:
        check_table(table, schema)
        self.model: type[Event] = event_model(schema)
        self.delay_us = delay_us
        present = {n: c for n, c in field_columns(schema).items() if c in table.column_names}
        self.names = list(present)
        self.converters = [_Converter(schema.field(n), table.column(c))
                           for n, c in present.items()]
        # An optional field with a default may be absent, never null: a null leaves it out.
        self.omit_null = [n for n in self.names
                          if schema.field(n).default is not None
                          and table.column(present[n]).null_count]
        self.ids = table.column("transaction_id").to_numpy()
        self.times = _int64(table.column("tx_datetime"))
        self.customers = table.column("customer_id").to_numpy()
        self.terminals = table.column("terminal_id").to_numpy()
        self.fraud = table.column("tx_fraud").to_numpy()
        self.scenarios = table.column("tx_fraud_scenario").to_numpy()

    def payments(self, rows: IntArray) -> list[Event]:
        model, names, omit = self.model, self.names, self.omit_null
        columns = [converter.take(rows) for converter in self.converters]
        if not omit:
            return [model(**dict(zip(names, values, strict=True)))
                    for values in zip(*columns, strict=True)]
        events = []
        for values in zip(*columns, strict=True):
            kwargs = dict(zip(names, values, strict=True))
            for name in omit:
                if kwargs[name] is None:
                    del kwargs[name]
            events.append(model(**kwargs))
        return events

    def labels(self, rows: IntArray) -> list[Label]:
        ids = self.ids[rows].tolist()
        times = self.times[rows].tolist()
        customers = self.customers[rows].tolist()
        terminals = self.terminals[rows].tolist()
        fraud = self.fraud[rows].tolist()
        scenarios = self.scenarios[rows].tolist()
        delay = timedelta(microseconds=self.delay_us)
        events = []
        for i in range(len(ids)):
            event_time = to_datetime(times[i])
            events.append(Label(
                transaction_id=str(ids[i]), customer_id=str(customers[i]),
                terminal_id=str(terminals[i]), transaction_time=event_time,
                labeled_at=event_time + delay, is_fraud=bool(fraud[i]),
                fraud_scenario=scenarios[i],
            ))
        return events

    def build(self, kinds: npt.NDArray[np.int8], rows: IntArray) -> list[Event]:
        """The events of plan rows ``rows`` (of kinds ``kinds``), in that order."""
        is_label = kinds == LABEL
        payments = iter(self.payments(rows[~is_label]))
        labels = iter(self.labels(rows[is_label]))
        return [next(labels) if flag else next(payments) for flag in is_label.tolist()]


class _ProgressDisplay:
    """A rich progress bar with throughput and the replay's event-time clock."""

    def __init__(self, total: int, console: Console | None, enabled: bool) -> None:
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]replay"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TextColumn("[cyan]{task.fields[clock]}"),
            TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, disable=not enabled, refresh_per_second=5,
        )
        self.task = self.progress.add_task("replay", total=total, rate="", clock="")
        self.last = 0.0

    def __enter__(self) -> _ProgressDisplay:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def update(self, done: int, started: float, event_time_us: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        rate = done / (now - started) if now > started else 0.0
        clock = to_datetime(event_time_us).strftime("%Y-%m-%d %H:%M")
        self.progress.update(self.task, completed=done, rate=f"{rate:,.0f} ev/s", clock=clock)


#: Events built and sent per batch (delivery failures are checked between batches).
BATCH = 2048


def replay(
    data_dir: Path | str,
    options: ReplayOptions | None = None,
    settings: KafkaSettings | None = None,
    producer: RecordSink | None = None,
    progress: bool = False,
    console: Console | None = None,
    **producer_overrides: Any,
) -> ReplayReport:
    """Replay the data set in ``data_dir``; see the module docstring for semantics.

    ``producer`` defaults to an :class:`EventProducer` on ``settings`` (created,
    flushed and closed here, after creating the topics if
    ``options.create_topics``); pass one to share a producer or to test
    (topics are then left alone, and the final flush is still called).
    """
    options = options or ReplayOptions()
    settings = settings or KafkaSettings()
    table = read_transactions(data_dir, columns_to_read(data_dir, options.schema))
    try:
        factory = _EventFactory(table, options.label_delay_us, options.schema)
    except ReplaySchemaError as exc:  # before anything is sent
        raise ReplaySchemaError(f"{Path(data_dir) / TRANSACTIONS_FILE}: {exc}") from None
    plan = plan_replay(table, options)
    if producer is not None:
        return _send(plan, factory, options, producer, progress, console)
    if options.create_topics:
        label_spec = spec_for_event(Label)
        # The payments topic gets the labels' partition count, so the two stay co-partitioned.
        ensure_topics(
            settings.bootstrap_servers,
            [options.transactions_topic, options.labels_topic],
            partitions={options.transactions_topic: label_spec.default_partitions,
                        options.labels_topic: label_spec.default_partitions},
            replication_factor=options.replication_factor,
        )
    with EventProducer(settings, **producer_overrides) as own:
        return _send(plan, factory, options, own, progress, console)


def _send(
    plan: ReplayPlan, factory: _EventFactory, options: ReplayOptions, producer: RecordSink,
    progress: bool, console: Console | None,
) -> ReplayReport:
    key_field = options.schema.partition_key
    label_key = spec_for_event(Label).key_field
    topics = {TRANSACTION: options.transactions_topic, LABEL: options.labels_topic}
    keys = {TRANSACTION: key_field, LABEL: label_key}
    headers = {TRANSACTION: headers_for(factory.model), LABEL: headers_for(Label)}
    counts = {TRANSACTION: 0, LABEL: 0}
    n_paced = plan.n_paced

    started = time.perf_counter()
    pacer = Pacer(options.pace, event_time_start=plan.slice_start_us / US_PER_SECOND)
    with _ProgressDisplay(len(plan), console, progress) as display:
        for batch_start in range(0, len(plan), BATCH):
            stop = min(batch_start + BATCH, len(plan))
            kinds = plan.kinds[batch_start:stop]
            times = plan.times_us[batch_start:stop].tolist()
            events = factory.build(kinds, plan.rows[batch_start:stop])
            for offset, (kind, event) in enumerate(zip(kinds.tolist(), events, strict=True)):
                index = batch_start + offset
                if index < n_paced and pacer.wait(index, times[offset] / US_PER_SECOND):
                    display.update(index, started, times[offset])
                producer.send_raw(topics[kind], str(getattr(event, keys[kind])).encode(),
                                  encode(event), headers[kind])
                counts[kind] += 1
            if producer.failures():
                producer.flush()  # raises DeliveryError listing them: stop early, loudly
            display.update(stop, started, times[-1])
        producer.flush()
        seconds = time.perf_counter() - started
        if len(plan):
            display.update(len(plan), started, int(plan.times_us[-1]), force=True)

    total = counts[TRANSACTION] + counts[LABEL]
    return ReplayReport(
        transactions=counts[TRANSACTION],
        labels=counts[LABEL],
        earlier_labels=plan.n_earlier_labels,
        pending_labels=plan.n_pending_labels,
        withheld_labels=plan.n_withheld_labels,
        seconds=seconds,
        events_per_second=total / seconds if seconds > 0 else 0.0,
        slice_start=to_datetime(plan.slice_start_us),
        slice_end=to_datetime(plan.slice_end_us),
        pace=options.pace.describe(),
        topics={options.transactions_topic: counts[TRANSACTION],
                options.labels_topic: counts[LABEL]},
    )
