"""The in-memory transaction table: parallel numpy columns.

Plain arrays rather than a DataFrame while generating, because every step is
a vectorized mask or gather and the fraud scenarios write into columns in
place; the table becomes a typed Arrow table only when written
(:mod:`rtml_simulator.io`).

Row order is event-time order with a total, reproducible tie-break: time in
seconds, then customer id, then the order the rows were generated in (see
:meth:`Transactions.sorted`). ``transaction_id`` is assigned from that order.

>>> t = Transactions.from_columns(time_seconds=[5, 1, 5], customer_id=[2, 9, 1],
...                               terminal_id=[0, 0, 0], amount=[1.0, 2.0, 3.0])
>>> t.sorted().customer_id.tolist()
[9, 1, 2]
>>> t.day.tolist()
[0, 0, 0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from rtml_simulator.config import SECONDS_PER_DAY

GENUINE = 0


@dataclass
class Transactions:
    """Columns of equal length; ``fraud``/``scenario`` start at 0 (genuine)."""

    #: Seconds since the start date's midnight (UTC).
    time_seconds: npt.NDArray[np.int64]
    customer_id: npt.NDArray[np.int64]
    terminal_id: npt.NDArray[np.int64]
    amount: npt.NDArray[np.float64]
    fraud: npt.NDArray[np.int8]
    scenario: npt.NDArray[np.int8]

    @classmethod
    def from_columns(
        cls,
        time_seconds: Sequence[int] | npt.NDArray[np.int64],
        customer_id: Sequence[int] | npt.NDArray[np.int64],
        terminal_id: Sequence[int] | npt.NDArray[np.int64],
        amount: Sequence[float] | npt.NDArray[np.float64],
        fraud: Sequence[int] | npt.NDArray[np.int8] | None = None,
        scenario: Sequence[int] | npt.NDArray[np.int8] | None = None,
    ) -> Transactions:
        n = len(time_seconds)
        return cls(
            time_seconds=np.asarray(time_seconds, dtype=np.int64),
            customer_id=np.asarray(customer_id, dtype=np.int64),
            terminal_id=np.asarray(terminal_id, dtype=np.int64),
            amount=np.asarray(amount, dtype=np.float64),
            fraud=np.zeros(n, np.int8) if fraud is None else np.asarray(fraud, np.int8),
            scenario=np.zeros(n, np.int8) if scenario is None else np.asarray(scenario, np.int8),
        )

    def __len__(self) -> int:
        return len(self.time_seconds)

    @property
    def day(self) -> npt.NDArray[np.int64]:
        """Day index since the start date."""
        return self.time_seconds // SECONDS_PER_DAY

    def take(self, index: npt.NDArray[np.intp]) -> Transactions:
        """Rows at ``index`` (a gather on every column)."""
        return Transactions(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def sort_order(self) -> npt.NDArray[np.intp]:
        """The permutation :meth:`sorted` applies (to sort row-aligned columns alike)."""
        return np.lexsort((np.arange(len(self)), self.customer_id, self.time_seconds))

    def sorted(self) -> Transactions:
        """Event-time order, ties broken by customer id, then current row order."""
        return self.take(self.sort_order())

    @staticmethod
    def concat(parts: Sequence[Transactions]) -> Transactions:
        return Transactions(**{
            f.name: np.concatenate([getattr(p, f.name) for p in parts])
            for f in fields(Transactions)
        })

    def equals(self, other: Transactions) -> bool:
        """Bit-for-bit equality of every column."""
        return all(
            np.array_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)
        )
