"""The worker's offline store: ``transactions`` and ``labels`` as Parquet segments.

**What a transaction row holds.** Every field of the served feature set's event
schema (:class:`~rtml_common.schema.EventSchema`, the handbook's ``transaction``
by default), one column per field in schema order (:func:`transactions_schema`:
strings, float64 numbers, int64 integers, booleans, UTC timestamps), so a
payments example's device, IP address, merchant category, country and channel
reach training. Segments written under another schema still read: a column a
segment lacks reads as nulls, a column the schema does not declare is not read.
Labels are the handbook's ``Label``.

Why the worker keeps one: a retrain needs weeks of history (30-day feature
windows plus the training and test periods) with each label's real
``labeled_at``, and nothing else in the platform keeps the raw streams.

Layout of ``<archive_dir>/segments/``: one file per kind and segment,
``<seq>-transactions.parquet`` / ``<seq>-labels.parquet``. A segment is
written when the buffer holds ``max_events`` events or its oldest event has
waited ``max_age_s``; each file is written atomically (:mod:`.files`) and
carries in its Parquet key-value metadata the next Kafka offset of every
partition it covers, its event-time range and (labels) the newest
``labeled_at`` per partition.

**Delivery.** The offsets inside the segments are the archive's checkpoint:
on (re)start each archived partition resumes right after its newest durable
segment, and a partition never archived starts from the beginning of the
topic. Offsets the consumer group committed for events still in memory are
therefore never trusted, so a crash loses nothing; a crash between writing
the transactions file and the labels file of one segment replays only the
labels. Records can still arrive twice (a producer retry, a replay run
twice, the ``.tmp`` of a crashed write is discarded and its events re-read),
so readers dedupe by ``transaction_id``, keeping the first archived
transaction and the first known label.

**Label time.** The archive's *label clock* is the event time up to which
labels are known: the newest ``labeled_at`` of each labels partition, and the
minimum over partitions, so one partition running ahead of the others does
not make labels of a lagging one look final.
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rtml_common.events import Event, Label
from rtml_common.files import remove_temp_files, write_atomically, write_bytes_atomically
from rtml_common.handbook import TRANSACTION_SCHEMA
from rtml_common.schema import EventSchema, FieldType

logger = logging.getLogger(__name__)

TRANSACTIONS = "transactions"
LABELS = "labels"
KINDS = (TRANSACTIONS, LABELS)
#: librdkafka's logical offset "from the beginning of the partition".
OFFSET_BEGINNING = -2

_TS = pa.timestamp("us", tz="UTC")
#: A field type's Parquet column type.
ARROW_TYPES: dict[FieldType, pa.DataType] = {
    FieldType.STRING: pa.string(), FieldType.NUMBER: pa.float64(),
    FieldType.INTEGER: pa.int64(), FieldType.BOOLEAN: pa.bool_(), FieldType.TIMESTAMP: _TS,
}


def transactions_schema(event_schema: EventSchema) -> pa.Schema:
    """The transactions segments' columns for ``event_schema``: one per field, in order.

    The handbook's schema gives exactly :data:`SCHEMAS` ``[TRANSACTIONS]``, the columns
    segments always had.
    """
    return pa.schema([(f.name, ARROW_TYPES[f.type]) for f in event_schema.fields])


#: The handbook's segment columns (the transactions' are ``transactions_schema`` of its
#: transaction schema).
SCHEMAS: dict[str, pa.Schema] = {
    TRANSACTIONS: pa.schema([
        ("transaction_id", pa.string()), ("event_time", _TS), ("customer_id", pa.string()),
        ("terminal_id", pa.string()), ("amount", pa.float64()), ("currency", pa.string()),
    ]),
    LABELS: pa.schema([
        ("transaction_id", pa.string()), ("customer_id", pa.string()),
        ("terminal_id", pa.string()), ("transaction_time", _TS), ("labeled_at", _TS),
        ("is_fraud", pa.bool_()), ("fraud_scenario", pa.int16()),
    ]),
}
#: Column whose range a segment records (and reads prune by), for the handbook's schema;
#: an archive's transactions use its schema's event-time field.
TIME_COLUMN = {TRANSACTIONS: "event_time", LABELS: "transaction_time"}

_META_OFFSETS = b"rtml.offsets"
_META_MIN = b"rtml.min_time_us"
_META_MAX = b"rtml.max_time_us"
_META_LABEL_TIME = b"rtml.label_time_us"
#: ``name@version`` of the event schema a transactions segment was written under.
_META_SCHEMA = b"rtml.event_schema"
#: Offsets of segments deleted by retention (so their partitions still resume correctly).
RETIRED_OFFSETS_FILE = "retired-offsets.json"

TopicPartition = tuple[str, int]


def _us(value: datetime) -> int:
    return int((value - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def _from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def _tp_key(tp: TopicPartition) -> str:
    return f"{tp[0]}:{tp[1]}"


def _tp_of(key: str) -> TopicPartition:
    topic, _, partition = key.rpartition(":")
    return topic, int(partition)


@dataclass(frozen=True)
class Segment:
    """One durable segment file and what its footer says."""

    path: Path
    kind: str
    seq: int
    rows: int
    min_time_us: int
    max_time_us: int
    offsets: dict[TopicPartition, int]
    #: Labels only: newest ``labeled_at`` per labels partition in this file.
    label_time_us: dict[TopicPartition, int] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Segment:
        seq, _, kind = path.name.removesuffix(".parquet").partition("-")
        meta = pq.read_metadata(path)
        kv = meta.metadata or {}
        return cls(
            path=path, kind=kind, seq=int(seq), rows=meta.num_rows,
            min_time_us=int(kv[_META_MIN]), max_time_us=int(kv[_META_MAX]),
            offsets={_tp_of(k): int(v) for k, v in orjson.loads(kv[_META_OFFSETS]).items()},
            label_time_us={_tp_of(k): int(v)
                           for k, v in orjson.loads(kv.get(_META_LABEL_TIME, b"{}")).items()},
        )

    def overlaps(self, start_us: int, end_us: int) -> bool:
        return self.min_time_us < end_us and self.max_time_us >= start_us


@dataclass
class _Buffer:
    """Events consumed since the last segment, column-wise, with their offsets."""

    columns: dict[str, dict[str, list[Any]]]
    offsets: dict[str, dict[TopicPartition, int]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS})
    label_time_us: dict[TopicPartition, int] = field(default_factory=dict)
    events: int = 0
    since: float | None = None

    @classmethod
    def of(cls, schemas: dict[str, pa.Schema]) -> _Buffer:
        return cls({kind: {name: [] for name in schemas[kind].names} for kind in KINDS})

    def rows(self, kind: str) -> int:
        return len(next(iter(self.columns[kind].values())))


@dataclass(frozen=True)
class ArchivedRecord:
    """A consumed event and where it came from (what :meth:`Archive.add` takes)."""

    topic: str
    partition: int
    offset: int
    #: A label, or an event of the archive's schema (a ``Transaction`` for the handbook's).
    value: Event


@dataclass(frozen=True)
class ArchiveState:
    """What is durable: counts, clocks and resume offsets (for logs, metrics, scheduling)."""

    segments: int
    transactions: int
    labels: int
    #: Newest archived transaction's event time.
    event_clock: datetime | None
    #: Label time every labels partition has reached (see the module doc).
    label_clock: datetime | None


class Archive:
    """Thread-safe: the consumer thread adds, a timer flushes, the trainer reads.

    ``event_schema`` is the schema of the archived transactions (the served feature
    set's; the handbook's by default): every one of its fields is a column.
    """

    def __init__(self, root: Path, max_events: int = 100_000, max_age_s: float = 60.0,
                 retention: timedelta | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 on_segment: Callable[[Segment], None] | None = None,
                 event_schema: EventSchema = TRANSACTION_SCHEMA) -> None:
        self.root = root
        self.event_schema = event_schema
        self.schemas = {TRANSACTIONS: transactions_schema(event_schema),
                        LABELS: SCHEMAS[LABELS]}
        self.time_column = {TRANSACTIONS: event_schema.event_time,
                            LABELS: TIME_COLUMN[LABELS]}
        self.id_column = {TRANSACTIONS: event_schema.id_field, LABELS: "transaction_id"}
        self._fields_of = operator.attrgetter(*event_schema.names)
        self.directory = root / "segments"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_events = max_events
        self.max_age_s = max_age_s
        self.retention = retention
        self._monotonic = monotonic
        self._on_segment = on_segment
        self._lock = threading.RLock()
        for temp in remove_temp_files(self.directory):
            logger.warning("removed %s, left half-written by a crash (its events are re-read)",
                           temp.name)
        self._segments: list[Segment] = sorted(
            (Segment.read(p) for p in self.directory.glob("*.parquet")),
            key=lambda s: (s.seq, s.kind))
        retired = root / RETIRED_OFFSETS_FILE
        self._retired: dict[TopicPartition, int] = (
            {_tp_of(k): int(v) for k, v in orjson.loads(retired.read_bytes()).items()}
            if retired.exists() else {})
        self._next_seq = max((s.seq for s in self._segments), default=0) + 1
        self._buffer = _Buffer.of(self.schemas)

    # -- the consumer side -------------------------------------------------

    def resume_offset(self, topic: str, partition: int) -> int:
        """Where consuming ``topic[partition]`` resumes: after its newest durable segment."""
        with self._lock:
            found = [s.offsets[(topic, partition)] for s in self._segments
                     if (topic, partition) in s.offsets]
            retired = self._retired.get((topic, partition))
            if retired is not None:
                found.append(retired)
            return max(found, default=OFFSET_BEGINNING)

    def add(self, records: Iterable[ArchivedRecord]) -> None:
        """Buffer ``records``; writes a segment once the buffer is full."""
        with self._lock:
            buffer = self._buffer
            for record in records:
                event = record.value
                tp = (record.topic, record.partition)
                if not isinstance(event, Label):
                    kind = TRANSACTIONS
                    row: tuple[Any, ...] = self._fields_of(event)
                else:
                    kind = LABELS
                    row = (event.transaction_id, event.customer_id, event.terminal_id,
                           event.transaction_time, event.labeled_at, event.is_fraud,
                           event.fraud_scenario)
                    labeled_us = _us(event.labeled_at)
                    if labeled_us > buffer.label_time_us.get(tp, -1):
                        buffer.label_time_us[tp] = labeled_us
                for values, value in zip(buffer.columns[kind].values(), row, strict=True):
                    values.append(value)
                offsets = buffer.offsets[kind]
                offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
                buffer.events += 1
                if buffer.since is None:
                    buffer.since = self._monotonic()
            if buffer.events >= self.max_events:
                self.flush()

    def flush_if_due(self) -> list[Segment]:
        """Write the buffer if its oldest event has waited ``max_age_s``."""
        with self._lock:
            since = self._buffer.since
            if since is not None and self._monotonic() - since >= self.max_age_s:
                return self.flush()
            return []

    def flush(self) -> list[Segment]:
        """Write what is buffered as one segment (a file per kind with rows); durable on return."""
        with self._lock:
            buffer = self._buffer
            if not buffer.events:
                return []
            seq = self._next_seq
            written = []
            for kind in KINDS:
                if buffer.rows(kind):
                    written.append(self._write(seq, kind, buffer))
            self._next_seq += 1
            self._buffer = _Buffer.of(self.schemas)
            self._segments.extend(written)
            self._apply_retention()
        for segment in written:
            logger.info("segment %s: %d %s", segment.path.name, segment.rows, segment.kind)
            if self._on_segment is not None:
                self._on_segment(segment)
        return written

    def _write(self, seq: int, kind: str, buffer: _Buffer) -> Segment:
        schema = self.schemas[kind]
        table = pa.Table.from_pydict(buffer.columns[kind], schema=schema)
        times = table.column(self.time_column[kind])
        min_us = _us(pc.min(times).as_py())
        max_us = _us(pc.max(times).as_py())
        offsets = buffer.offsets[kind]
        label_time = buffer.label_time_us if kind == LABELS else {}
        metadata = {
            _META_OFFSETS: orjson.dumps({_tp_key(tp): o for tp, o in offsets.items()}),
            _META_MIN: str(min_us).encode(), _META_MAX: str(max_us).encode(),
            _META_LABEL_TIME: orjson.dumps({_tp_key(tp): t for tp, t in label_time.items()}),
        }
        if kind == TRANSACTIONS:
            metadata[_META_SCHEMA] = (f"{self.event_schema.name}@"
                                      f"{self.event_schema.version}").encode()
        table = table.replace_schema_metadata(metadata)
        path = self.directory / f"{seq:010d}-{kind}.parquet"
        write_atomically(path, lambda temp: pq.write_table(table, temp))
        return Segment(path, kind, seq, table.num_rows, min_us, max_us, dict(offsets),
                       dict(label_time))

    def _apply_retention(self) -> None:
        """Delete segments too old to matter, remembering their offsets first."""
        if not self.retention:
            return
        newest = max((s.max_time_us for s in self._segments if s.kind == TRANSACTIONS),
                     default=None)
        if newest is None:
            return
        cutoff = newest - int(self.retention / timedelta(microseconds=1))
        old = [s for s in self._segments if s.max_time_us < cutoff]
        if not old:
            return
        retired = dict(self._retired)
        for segment in old:
            for tp, offset in segment.offsets.items():
                retired[tp] = max(retired.get(tp, 0), offset)
        write_bytes_atomically(self.root / RETIRED_OFFSETS_FILE,
                               orjson.dumps({_tp_key(tp): o for tp, o in retired.items()}))
        self._retired = retired
        for segment in old:
            segment.path.unlink(missing_ok=True)
            logger.info("retention: deleted %s", segment.path.name)
        self._segments = [s for s in self._segments if s not in old]

    # -- the reader side ---------------------------------------------------

    @property
    def segments(self) -> list[Segment]:
        with self._lock:
            return list(self._segments)

    @property
    def buffered_events(self) -> int:
        with self._lock:
            return self._buffer.events

    def state(self) -> ArchiveState:
        """The durable archive's counts and clocks (buffered events not included)."""
        with self._lock:
            segments = list(self._segments)
        label_time: dict[TopicPartition, int] = {}
        for segment in segments:
            for tp, us in segment.label_time_us.items():
                label_time[tp] = max(label_time.get(tp, us), us)
        tx = [s for s in segments if s.kind == TRANSACTIONS]
        return ArchiveState(
            segments=len({s.seq for s in segments}),
            transactions=sum(s.rows for s in tx),
            labels=sum(s.rows for s in segments if s.kind == LABELS),
            event_clock=_from_us(max(s.max_time_us for s in tx)) if tx else None,
            label_clock=_from_us(min(label_time.values())) if label_time else None,
        )

    def read(self, kind: str, start: datetime | None = None,
             end: datetime | None = None) -> pd.DataFrame:
        """Archived ``kind`` rows with their time column in ``[start, end)``, deduplicated.

        Transactions keep their first archived copy; labels their first known
        label (earliest ``labeled_at``, then first archived). Rows come in
        archive order for transactions, ``labeled_at`` order for labels. The columns
        are the archive's schema's: a segment written without one reads it as nulls.
        """
        start_us = _us(start) if start is not None else -(2**62)
        end_us = _us(end) if end is not None else 2**62
        files = [s.path for s in self.segments
                 if s.kind == kind and s.overlaps(start_us, end_us)]
        schema = self.schemas[kind]
        tables = [pq.read_table(path, schema=schema) for path in files]
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        frame = table.to_pandas()
        column = self.time_column[kind]
        if start is not None:
            frame = frame[frame[column] >= pd.Timestamp(start)]
        if end is not None:
            frame = frame[frame[column] < pd.Timestamp(end)]
        if kind == LABELS:
            frame = frame.sort_values("labeled_at", kind="stable")
        return frame.drop_duplicates(self.id_column[kind], keep="first").reset_index(drop=True)


def records_of(records: Sequence[Any]) -> list[ArchivedRecord]:
    """:class:`ArchivedRecord` values of consumer-loop records (anything with those fields)."""
    return [ArchivedRecord(r.topic, r.partition, r.offset, r.value) for r in records]
