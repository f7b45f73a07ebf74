"""The simulated payments to send: a data set's transactions from a chosen day on.

The data set is the simulator's (:func:`rtml_simulator.write_dataset`,
``transactions.parquet``, event-time order). Each payment keeps its place in
event time as an *offset* from the chosen day's midnight; the runner maps
offsets onto the wall clock (:mod:`rtml_cli.traffic.pacing`), so the data
set's own dates (2018) never reach the API.

Which payment goes out in which send slot is :class:`SlotPicker`'s job: a
slot sends the latest payment due by the event clock that was not sent yet.
When the data set holds more payments per slot than the rate sends, the ones
in between are *skipped* (counted); when it holds fewer, a slot with nothing
due stays *idle* (counted): the rate is a target the data set's density at
that speed may cap, never exceeded by inventing payments or sending them
before their time.

A served event schema with more fields than the handbook's (the payments
example's device, IP address, merchant category, country, channel) is fed
from the data set's columns of those names (the simulator's ``--rich``
mode writes them): :func:`load_source` reads the ``fields`` it is given and
:meth:`TrafficSource.extra` gives a row's values for the request body.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from rtml_common.events import Label, Transaction
from rtml_simulator.io import read_transactions

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND

#: Columns read from ``transactions.parquet``.
COLUMNS = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "tx_amount",
           "tx_time_seconds", "tx_time_days", "tx_fraud", "tx_fraud_scenario")


class SourceError(ValueError):
    """The data set cannot feed the traffic source; the message says why and what to do."""


@dataclass(frozen=True)
class TrafficSource:
    """The payments of days ``[start_day, end)``, as arrays in event-time order."""

    start_day: int
    #: The start day's midnight in the data set's own time (``--event-times data``).
    start_time: datetime
    #: Event time of each payment, microseconds after the start day's midnight.
    offsets_us: npt.NDArray[np.int64]
    #: Event microseconds from the start day's midnight to the end of the data's last day.
    span_us: int
    ids: npt.NDArray[np.int64]
    customers: npt.NDArray[np.int64]
    terminals: npt.NDArray[np.int64]
    amounts: npt.NDArray[np.float64]
    fraud: npt.NDArray[np.int8]
    scenarios: npt.NDArray[np.int8]
    #: Values of the served schema's other fields per row (None: absent in that row).
    extras: dict[str, list[str | None]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.offsets_us)

    def transaction(self, row: int, run_id: str, event_time: datetime) -> Transaction:
        """Row ``row`` as the request body, with this run's id and the mapped event time."""
        return Transaction(
            transaction_id=transaction_id(run_id, int(self.ids[row])), event_time=event_time,
            customer_id=str(int(self.customers[row])),
            terminal_id=str(int(self.terminals[row])), amount=float(self.amounts[row]))

    def extra(self, row: int) -> dict[str, str]:
        """Row ``row``'s values of the extra fields; an absent (null) value is left out."""
        found = ((name, values[row]) for name, values in self.extras.items())
        return {name: value for name, value in found if value is not None}

    def label(self, row: int, run_id: str, event_time: datetime,
              delay: timedelta) -> Label:
        """The fraud label of row ``row``, known ``delay`` (event time) after the payment."""
        return Label(
            transaction_id=transaction_id(run_id, int(self.ids[row])),
            customer_id=str(int(self.customers[row])),
            terminal_id=str(int(self.terminals[row])), transaction_time=event_time,
            labeled_at=event_time + delay, is_fraud=bool(self.fraud[row]),
            fraud_scenario=int(self.scenarios[row]))


def transaction_id(run_id: str, data_id: int) -> str:
    """A run's id for a data set row: unique per run, so re-runs never meet the API's
    idempotency record of an earlier run (the same id with another body is a 409)."""
    return f"{run_id}-{data_id}"


def load_source(data_dir: Path | str, start_day: int,
                fields: Sequence[str] = ()) -> TrafficSource:
    """The payments from ``start_day`` on, with the extra ``fields`` (columns of those names);
    :class:`SourceError` if there are none or a field has no column."""
    try:
        table = read_transactions(data_dir)
    except FileNotFoundError as exc:
        raise SourceError(str(exc)) from None
    except pa.ArrowInvalid as exc:
        raise SourceError(f"{data_dir} is not a simulator data set: {exc}") from None
    missing = [name for name in (*COLUMNS, *fields) if name not in table.column_names]
    if missing:
        hint = (" (the served event schema's fields: simulate the data set with "
                "`rtml simulate --rich`)" if set(missing) <= set(fields) else "")
        raise SourceError(f"{data_dir} has no column {', '.join(missing)}{hint}")
    return source_from_table(table.select([*COLUMNS, *fields]), start_day, str(data_dir),
                             fields)


def source_from_table(table: pa.Table, start_day: int, where: str = "the data set",
                      fields: Sequence[str] = ()) -> TrafficSource:
    """:func:`load_source` on a table already read (tests)."""
    if table.num_rows == 0:
        raise SourceError(f"{where} holds no transactions")
    day = table.column("tx_time_days").to_numpy().astype(np.int64)
    last_day = int(day[-1])
    if start_day > last_day:
        raise SourceError(f"--start-day {start_day} is past the data: {where} holds days "
                          f"0 to {last_day}")
    times = table.column("tx_datetime").cast(pa.int64()).to_numpy().astype(np.int64)
    # Midnight of the data set's first day, as the replay computes it.
    origin = int(times[0]) - int(table.column("tx_time_seconds")[0].as_py()) * US_PER_SECOND
    first = int(np.searchsorted(day, start_day, "left"))
    start_us = origin + start_day * US_PER_DAY

    def column(name: str) -> npt.NDArray[np.generic]:
        return table.column(name).slice(first).to_numpy()

    return TrafficSource(
        start_day=start_day, start_time=EPOCH + timedelta(microseconds=start_us),
        offsets_us=times[first:] - start_us,
        span_us=(last_day + 1 - start_day) * US_PER_DAY,
        ids=column("transaction_id").astype(np.int64),
        customers=column("customer_id").astype(np.int64),
        terminals=column("terminal_id").astype(np.int64),
        amounts=column("tx_amount").astype(np.float64),
        fraud=column("tx_fraud").astype(np.int8),
        scenarios=column("tx_fraud_scenario").astype(np.int8),
        extras={name: [None if value is None else str(value)
                       for value in table.column(name).slice(first).to_pylist()]
                for name in fields})


class SlotPicker:
    """Chooses each send slot's payment from the event clock (module docstring)."""

    def __init__(self, offsets_us: npt.NDArray[np.int64]) -> None:
        self.offsets_us = offsets_us
        #: First row not sent nor skipped yet.
        self.next_row = 0
        self.skipped = 0
        self.idle = 0

    @property
    def exhausted(self) -> bool:
        """Every payment was sent or skipped."""
        return self.next_row >= len(self.offsets_us)

    def pick(self, position_us: int) -> int | None:
        """The row to send in a slot whose event clock reads ``position_us``, or None (idle).

        The latest payment at or before the clock, skipping the earlier unsent ones:
        the event time sent stays within one slot of the clock.
        """
        due = int(np.searchsorted(self.offsets_us, position_us, "right"))
        if due <= self.next_row:
            self.idle += 1
            return None
        row = due - 1
        self.skipped += row - self.next_row
        self.next_row = due
        return row


def served_extra_fields() -> tuple[str, ...]:
    """The served feature set's event fields beyond the handbook's (``RTML_FEATURE_SET`` in
    ``RTML_FEATURE_REPO``, as the services resolve it): what a request must carry besides
    a transaction's fields. None for the handbook's sets."""
    from rtml_common.handbook import TRANSACTION_SCHEMA
    from rtml_features.baseline import default_feature_set, get_feature_set

    try:
        schema = get_feature_set(default_feature_set()).schema
    except (KeyError, ValueError) as exc:  # an unknown set, a repo that does not load
        raise SourceError(f"the served feature set: {exc.args[0] if exc.args else exc}") from None
    handbook = {f.name for f in TRANSACTION_SCHEMA.fields}
    return tuple(f.name for f in schema.fields if f.name not in handbook)
