"""Demo step: read everything back with a real consumer and check the counts.

The audit is an ordinary platform consumer (:class:`ConsumerLoop`) with a
fresh group id, so it starts at the beginning of ``transactions`` and
``labels``, validates every record, and dead-letters the broken ones exactly
as a service would. It proves two things: nothing the replay sent was lost
(valid counts equal the replay's), and each broken record landed in
``transactions.dlq`` with its reason.

When the stack was already up, the topics also hold earlier runs' records.
They are read (a fresh group reads everything) but counted apart: this
run's records are those produced since the run started (Kafka timestamps),
and its dead letters those carrying the run-id header the demo put on its
broken records.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rtml_cli.demo_steps.context import RUN_HEADER, DemoContext, DemoError
from rtml_cli.dlq import dead_letter_table, read_dead_letters
from rtml_common.config import KafkaSettings
from rtml_common.events import Event, Label, Transaction
from rtml_common.kafka.consumer import ConsumerLoop, Record
from rtml_common.kafka.dead_letter import DeadLetter
from rtml_common.serde import header_value

TOPICS: dict[str, type[Event]] = {"transactions": Transaction, "labels": Label}


def audit_topics() -> dict[str, type[Event]]:
    """The served feature set's event and label topics with their models (``RTML_FEATURE_SET``
    in ``RTML_FEATURE_REPO``): the handbook's :data:`TOPICS`, or e.g. the payments schema's
    generated model, so the payments' extra fields are valid records, not dead letters."""
    from rtml_common.handbook import TRANSACTION_SCHEMA
    from rtml_common.schema_models import event_model
    from rtml_features.baseline import default_feature_set, get_feature_set

    served = get_feature_set(default_feature_set())
    if served.schema == TRANSACTION_SCHEMA:
        return TOPICS
    return {served.source_topic: event_model(served.schema), served.label_topic: Label}


#: The local broker makes a group's first join wait about half the session
#: timeout; 6 s (the test fixtures' value) keeps the wait to ~3 s.
SESSION_TIMEOUT_MS = 6000


@dataclass
class AuditCounts:
    """What the audit consumer saw; "this run" counts are compared with the replay."""

    group_id: str
    #: Valid records of this run, per topic.
    valid: Counter[str] = field(default_factory=Counter)
    #: Labels of this run with ``is_fraud``.
    fraud_labels: int = 0
    #: Dead letters of this run's broken records.
    dead_letters: int = 0
    #: Valid records produced before this run (stack already up), read but not counted.
    earlier_records: int = 0
    #: Everything the loop dead-lettered, earlier runs' broken records included.
    dead_lettered_total: int = 0
    consumed: int = 0
    seconds: float = 0.0


@contextlib.contextmanager
def _quiet_consumer_logs() -> Iterator[None]:
    """Dead-lettering logs a warning per record; the demo shows them in a table instead."""
    logger = logging.getLogger("rtml_common.kafka.consumer")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _progress(ctx: DemoContext) -> Progress:
    return Progress(
        TextColumn("  [bold]audit"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
        console=ctx.console, transient=False,
    )


def consume_all(ctx: DemoContext, counts: AuditCounts, expected: int) -> None:
    """Run the consumer loop until idle, counting as it goes."""
    settings = KafkaSettings(bootstrap_servers=ctx.require_kafka(),
                             session_timeout_ms=SESSION_TIMEOUT_MS, batch_size=2000)
    with _progress(ctx) as progress, _quiet_consumer_logs():
        task = progress.add_task("audit", total=expected or None, note="joining group")

        def handle(records: list[Record[Any]]) -> None:
            for record in records:
                if record.timestamp_ms < ctx.started_ms:
                    counts.earlier_records += 1
                    continue
                counts.valid[record.topic] += 1
                if isinstance(record.value, Label) and record.value.is_fraud:
                    counts.fraud_labels += 1
            note = f"dlq {loop.stats.dead_lettered}"
            if counts.earlier_records:
                note += f", earlier runs {counts.earlier_records:,}"
            progress.update(task, completed=sum(counts.valid.values()), note=note)

        loop = ConsumerLoop(audit_topics(), counts.group_id, handle, settings=settings)
        started = time.perf_counter()
        try:
            stats = loop.run(max_idle_s=ctx.settings.audit_idle_s)
        except KafkaException as exc:
            raise DemoError(f"the audit consumer failed: {exc}") from exc
        counts.seconds = time.perf_counter() - started
        counts.consumed = stats.consumed
        counts.dead_lettered_total = stats.dead_lettered


def this_runs_dead_letters(ctx: DemoContext, group_id: str) -> list[DeadLetter]:
    """Dead letters the audit group wrote for records this run produced."""
    letters: list[DeadLetter] = []
    for topic in TOPICS:
        try:
            found = read_dead_letters(ctx.require_kafka(), topic, None, idle_timeout_s=1.0)
        except KafkaException as exc:
            raise DemoError(f"cannot read the dead letters of {topic}: {exc}") from exc
        letters += [
            letter for letter in found
            if letter.consumer_group == group_id
            and header_value(letter.original_headers, RUN_HEADER) == ctx.run_id.encode()
        ]
    return letters


def audit(ctx: DemoContext) -> None:
    """Consume, count, fetch this run's dead letters, and check against the replay."""
    counts = AuditCounts(group_id=f"rtml-demo-audit-{ctx.run_id}-{uuid.uuid4().hex[:4]}")
    expected = ctx.replay.events if ctx.replay else 0
    consume_all(ctx, counts, expected)
    ctx.dead_letters = this_runs_dead_letters(ctx, counts.group_id)
    counts.dead_letters = len(ctx.dead_letters)
    ctx.audit = counts
    ctx.add_section("audit consumer", audit_table(counts))
    if ctx.dead_letters:
        ctx.add_section("dead letters of this run",
                        dead_letter_table("transactions", ctx.dead_letters,
                                          columns=("partition@offset", "error", "reason")))
    problems = mismatches(ctx, counts)
    if problems:
        raise DemoError("the audit does not match what was produced:\n  " + "\n  ".join(problems))


def mismatches(ctx: DemoContext, counts: AuditCounts) -> list[str]:
    """Differences between what this run produced and what the audit read."""
    problems = []
    if ctx.replay is not None:
        for topic, sent in ctx.replay.topics.items():
            if counts.valid[topic] != sent:
                problems.append(f"{topic}: replayed {sent:,}, audited {counts.valid[topic]:,}")
    if counts.dead_letters != len(ctx.malformed):
        problems.append(f"dead letters: expected {len(ctx.malformed)}, found "
                        f"{counts.dead_letters}")
    return problems


def audit_table(counts: AuditCounts) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for topic in TOPICS:
        table.add_row(f"valid {topic}", f"{counts.valid[topic]:,}")
    table.add_row("fraud labels", f"{counts.fraud_labels:,}")
    table.add_row("dead letters", f"{counts.dead_letters:,}")
    if counts.earlier_records:
        table.add_row("records of earlier runs (not counted)", f"{counts.earlier_records:,}")
    if counts.dead_lettered_total > counts.dead_letters:
        table.add_row("earlier broken records (dead-lettered again)",
                      f"{counts.dead_lettered_total - counts.dead_letters:,}")
    table.add_row("consumer group", counts.group_id)
    table.add_row("wall time", f"{counts.seconds:.1f} s")
    return table
