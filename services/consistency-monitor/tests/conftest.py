"""Fixtures of the consistency monitor's tests: a small hand-made world of events.

``world``: 40 days of transactions of a few customers and terminals (some
stamped at the same millisecond, some amounts with many decimals), a first
label for most of them (and a later, contradicting second label for some),
and helpers that build what the decision API would have served for a
transaction: the batch engine's values and the lag markers counted here in
plain Python, independently of the monitor's own computation.

Test modules cannot import this file (pytest's importlib mode), so helpers
are reached through the fixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from rtml_common.events import Decision, Label, Outcome, Transaction, utcnow
from rtml_features.baseline import BASELINE
from rtml_features.batch import compute_features
from rtml_features.request_vector import log_spec

T0 = datetime(2018, 6, 1, tzinfo=UTC)
DAYS = 40


@dataclass
class World:
    transactions: list[Transaction]
    labels: list[Label]

    @property
    def by_id(self) -> dict[str, Transaction]:
        return {tx.transaction_id: tx for tx in self.transactions}

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        history = pd.DataFrame({
            "transaction_id": [t.transaction_id for t in self.transactions],
            "event_time": pd.to_datetime([t.event_time for t in self.transactions], utc=True),
            "customer_id": [t.customer_id for t in self.transactions],
            "terminal_id": [t.terminal_id for t in self.transactions],
            "amount": [t.amount for t in self.transactions],
        })
        labels = pd.DataFrame({
            "transaction_id": [lab.transaction_id for lab in self.labels],
            "labeled_at": pd.to_datetime([lab.labeled_at for lab in self.labels], utc=True),
            "is_fraud": [lab.is_fraud for lab in self.labels],
        })
        return history, labels

    def batch_values(self, transaction_ids: list[str]) -> pd.DataFrame:
        """The batch engine's features of those transactions over the whole world."""
        history, labels = self.frames()
        spine = history.set_index("transaction_id").loc[transaction_ids].reset_index()
        return compute_features(BASELINE, spine, history, labels)

    def first_labels(self) -> dict[str, Label]:
        first: dict[str, Label] = {}
        for label in sorted(self.labels, key=lambda lab: lab.labeled_at):
            first.setdefault(label.transaction_id, label)
        return first

    def markers(self, transaction_id: str) -> dict[str, float]:
        """``rtml_seen_*`` as an API with a complete, current state would record them."""
        tx = self.by_id[transaction_id]
        first = self.first_labels()
        result: dict[str, float] = {}
        for entity in BASELINE.entities:
            horizon = BASELINE.horizon(entity)
            key = getattr(tx, entity.key)
            seen = [o for o in self.transactions
                    if o.transaction_id != transaction_id and getattr(o, entity.key) == key
                    and tx.event_time - horizon < o.event_time <= tx.event_time]
            frauds = [o for o in seen if o.transaction_id in first
                      and first[o.transaction_id].is_fraud
                      and first[o.transaction_id].labeled_at <= tx.event_time]
            result[f"rtml_seen_events_{entity.name}"] = float(len(seen))
            # An entity without label-delayed features keeps no label log: the API records 0.
            result[f"rtml_seen_labels_{entity.name}"] = (
                float(len(frauds)) if log_spec(BASELINE, entity).label_fields else 0.0)
        return result

    def served_inputs(self, transaction_ids: list[str]) -> dict[str, dict[str, float | str | None]]:
        """What a consistent API records in ``inputs``: request fields, features, markers."""
        values = self.batch_values(transaction_ids)
        served: dict[str, dict[str, float | str | None]] = {}
        for i, tid in enumerate(transaction_ids):
            tx = self.by_id[tid]
            inputs: dict[str, float | str | None] = {
                "amount": tx.amount, "customer_id": tx.customer_id,
                "terminal_id": tx.terminal_id, "score": 0.1}
            inputs.update({name: float(values[name].iloc[i]) for name in BASELINE.names})
            inputs.update(self.markers(tid))
            served[tid] = inputs
        return served

    def decision(self, transaction_id: str,
                 inputs: dict[str, float | str | None]) -> Decision:
        tx = self.by_id[transaction_id]
        return Decision(transaction_id=tx.transaction_id, customer_id=tx.customer_id,
                        event_time=tx.event_time, outcome=Outcome.APPROVE, score=0.1,
                        rule_set_version="test", latency_ms=1.0, decided_at=utcnow(),
                        inputs=inputs)


def build_world(seed: int = 7, customers: int = 6, terminals: int = 4,
                per_day: int = 8) -> World:
    rng = np.random.default_rng(seed)
    transactions: list[Transaction] = []
    n = DAYS * per_day
    offsets = np.sort(rng.integers(0, DAYS * 86_400_000, n))
    for i in range(n):
        when = T0 + timedelta(milliseconds=int(offsets[i]))
        if i % 37 == 5 and transactions:  # simultaneous with the previous event
            when = transactions[-1].event_time
        transactions.append(Transaction(
            transaction_id=f"tx-{i:05d}", event_time=when,
            customer_id=f"c{int(rng.integers(customers))}",
            terminal_id=f"t{int(rng.integers(terminals))}",
            amount=round(float(rng.gamma(2.0, 30.0)), 2) + (1 / 3 if i % 11 == 0 else 0.0)))
    labels: list[Label] = []
    for tx in transactions:
        if rng.random() < 0.15:
            continue  # never labelled
        delay = timedelta(hours=float(rng.uniform(1, 24 * 12)))
        fraud = bool(rng.random() < 0.25)
        labels.append(Label(transaction_id=tx.transaction_id, customer_id=tx.customer_id,
                            terminal_id=tx.terminal_id, transaction_time=tx.event_time,
                            labeled_at=tx.event_time + delay, is_fraud=fraud))
        if rng.random() < 0.1:  # a later, contradicting label: the first one must win
            labels.append(Label(transaction_id=tx.transaction_id, customer_id=tx.customer_id,
                                terminal_id=tx.terminal_id, transaction_time=tx.event_time,
                                labeled_at=tx.event_time + delay + timedelta(days=1),
                                is_fraud=not fraud))
    labels.sort(key=lambda lab: lab.labeled_at)
    return World(transactions, labels)


@pytest.fixture(scope="session")
def world() -> World:
    return build_world()


@pytest.fixture(scope="session")
def world_of() -> type[World]:
    """``world_of(transactions, labels)``: a :class:`World` of the given events."""
    return World
