"""Turn consumed records into state changes: the per-transaction join's write side.

Predictions, shadow scores and labels arrive in any order, on three topics,
at least once. Nothing is joined in memory: every record becomes a row keyed
by transaction (see :mod:`.store`), and the evaluation joins them in SQL. That
makes order irrelevant (a label may come before the scores it labels) and
duplicates harmless (the first copy of ``(transaction, role, version)`` wins).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rtml_common.events import Event, Label, Prediction, ShadowScore
from rtml_common.kafka.consumer import Record
from rtml_common.topics import spec_for_event
from rtml_shadow_auditor.store import CHAMPION, SHADOW, Batch, LabelRow, ScoreRow, Store, to_us

PREDICTIONS_TOPIC = spec_for_event(Prediction).name
SHADOW_SCORES_TOPIC = spec_for_event(ShadowScore).name
LABELS_TOPIC = spec_for_event(Label).name
TOPICS: dict[str, type[Event]] = {PREDICTIONS_TOPIC: Prediction, SHADOW_SCORES_TOPIC: ShadowScore,
                                  LABELS_TOPIC: Label}

#: Counter of records scored by another registered model (shared topics; not ours to audit).
OTHER_MODEL = "other_model_records"


def to_batch(records: Sequence[Record[Any]], model_name: str) -> Batch:
    """The state changes of ``records`` plus the next offset of each partition they cover."""
    scores: list[ScoreRow] = []
    labels: list[LabelRow] = []
    offsets: dict[tuple[str, int], int] = {}
    other = 0
    for record in records:
        key = (record.topic, record.partition)
        offsets[key] = max(offsets.get(key, 0), record.offset + 1)
        event = record.value
        if isinstance(event, Label):
            labels.append(LabelRow(event.transaction_id, event.is_fraud, to_us(event.labeled_at),
                                   to_us(event.transaction_time)))
        elif isinstance(event, Prediction | ShadowScore):
            if event.model_name != model_name:
                other += 1
                continue
            shadow = isinstance(event, ShadowScore)
            scores.append(ScoreRow(
                event.transaction_id, SHADOW if shadow else CHAMPION, event.model_version,
                event.customer_id, to_us(event.event_time), event.score, event.latency_ms,
                event.champion_version if isinstance(event, ShadowScore) else None))
        else:  # the loop decodes each topic as its own type; anything else is a wiring bug
            raise TypeError(f"unexpected {type(event).__name__} on {record.topic}")
    return Batch(scores, labels, offsets, {OTHER_MODEL: other})


class Joiner:
    """The consumer loop's batch handler: apply each batch to the store atomically."""

    def __init__(self, store: Store, model_name: str) -> None:
        self.store = store
        self.model_name = model_name
        self.applied = 0
        self.batches = 0

    def handle(self, records: list[Record[Any]]) -> None:
        self.store.apply(to_batch(records, self.model_name))
        self.applied += len(records)
        self.batches += 1

    def on_batch_consumed(self, consumed: dict[tuple[str, int], int]) -> None:
        """Also cover dead-lettered records (the handler never saw them) in the stored offsets."""
        self.store.advance_offsets(consumed)

    def start_offset(self, topic: str, partition: int) -> int | None:
        return self.store.offset(topic, partition)
