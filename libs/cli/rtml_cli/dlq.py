"""``rtml dlq``: see what was dead-lettered and why.

Every consumer group that fails on a record dead-letters it on its own (the
scorer, the feature pipeline and the auditor all read ``transactions``), so a
dead-letter topic holds one dead letter per record *and group*. ``show`` lists
each original record once (same source topic, partition and offset) with the
groups that dead-lettered it; ``--per-group`` lists every dead letter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import typer
from confluent_kafka import KafkaException
from rich.table import Table

from rtml_common.config import KafkaSettings
from rtml_common.kafka.dead_letter import DeadLetter
from rtml_common.kafka.reader import iter_topic
from rtml_common.topics import dead_letter_topic, spec_for
from rtml_localstack.console import make_console

app = typer.Typer(help="Inspect dead-letter topics.", no_args_is_help=True)
console = make_console()


def iter_dead_letters(bootstrap_servers: str, topic: str, limit: int | None,
                      idle_timeout_s: float = 2.0) -> Iterator[DeadLetter]:
    """The dead letters of ``topic`` (a data topic name), oldest first."""
    spec_for(topic)  # precise error for a typo before touching the broker
    for message in iter_topic(bootstrap_servers, dead_letter_topic(topic), limit,
                              idle_timeout_s=idle_timeout_s):
        yield DeadLetter.from_message(message)


def read_dead_letters(bootstrap_servers: str, topic: str, limit: int | None,
                      idle_timeout_s: float = 2.0) -> list[DeadLetter]:
    """The dead letters of ``topic`` (a data topic name), oldest first."""
    return list(iter_dead_letters(bootstrap_servers, topic, limit, idle_timeout_s))


@dataclass
class DeadLetteredRecord:
    """One original record and the consumer groups that dead-lettered it."""

    #: The first dead letter of the record (its error and reason are shown).
    letter: DeadLetter
    #: Consumer groups that dead-lettered it, in the order their dead letters came.
    groups: list[str] = field(default_factory=list)
    #: Its dead letters (a group that dead-lettered it twice, e.g. after a replay,
    #: counts twice here and once in ``groups``).
    dead_letters: int = 0


@dataclass
class DistinctRecords:
    """What :func:`distinct_records` found: the first records and the totals."""

    records: list[DeadLetteredRecord]
    total_records: int
    total_dead_letters: int


def distinct_records(letters: Iterable[DeadLetter], limit: int | None) -> DistinctRecords:
    """Group dead letters by their original record (source topic, partition, offset).

    Reads all of ``letters`` so each kept record's groups are complete (a group may
    dead-letter a record long after another did), but keeps only the first ``limit``
    records: memory stays bounded by ``limit``, not by the topic.
    """
    kept: dict[tuple[str, int, int], DeadLetteredRecord] = {}
    seen: set[tuple[str, int, int]] = set()
    count = 0
    for letter in letters:
        count += 1
        origin = (letter.source_topic, letter.source_partition, letter.source_offset)
        seen.add(origin)
        record = kept.get(origin)
        if record is None:
            if limit is not None and len(kept) >= limit:
                continue
            record = kept[origin] = DeadLetteredRecord(letter)
        record.dead_letters += 1
        if letter.consumer_group not in record.groups:
            record.groups.append(letter.consumer_group)
    return DistinctRecords(list(kept.values()), len(seen), count)


#: Every column :func:`dead_letter_table` can show, in display order.
COLUMNS = ("partition@offset", "group", "error", "reason", "value")
#: Every column :func:`record_table` can show, in display order.
RECORD_COLUMNS = ("partition@offset", "groups", "error", "reason", "value")


def value_cell(letter: DeadLetter, width: int = 60) -> str:
    """A value preview; for a dead letter cut to fit the size limit (or sent minimal
    because the broker refused it), what was cut and the original's size and digest."""
    preview = (letter.value or b"").decode(errors="replace")
    preview = preview if len(preview) <= width else preview[:width] + "…"
    if letter.complete:
        return preview
    note = f"[cut: {', '.join(letter.truncated)}"
    if letter.original_bytes is not None:
        note += f"; original {letter.original_bytes:,} bytes, sha256 {letter.original_sha256}"
    if letter.delivery_error is not None:
        note += f"; minimal, broker refused the full record: {letter.delivery_error}"
    return f"{note}] {preview}".rstrip()


def dead_letter_table(topic: str, letters: list[DeadLetter], width: int = 60,
                      columns: Sequence[str] = COLUMNS, title: str | None = None) -> Table:
    """A table of dead letters: origin, error type, reason and a value preview.

    ``columns`` picks a subset (narrow terminals: the reason matters most). The
    default title counts records, right for one group's dead letters.
    """
    _check_columns(columns, COLUMNS)
    table = Table(title=title or f"{dead_letter_topic(topic)}: {len(letters)} record(s)")
    for column in columns:
        table.add_column(column, overflow="fold")
    for letter in letters:
        cells = {**_cells(letter, width), "group": letter.consumer_group}
        table.add_row(*(cells[column] for column in columns))
    return table


def record_table(topic: str, found: DistinctRecords, width: int = 60,
                 columns: Sequence[str] = RECORD_COLUMNS) -> Table:
    """A table of dead-lettered records, each once, with how many groups (and which)
    dead-lettered it; error and reason are those of its first dead letter."""
    _check_columns(columns, RECORD_COLUMNS)
    shown = len(found.records)
    title = f"{dead_letter_topic(topic)}: {found.total_records} record(s)"
    if shown < found.total_records:
        title += f", first {shown} shown"
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for record in found.records:
        cells = {**_cells(record.letter, width),
                 "groups": f"{len(record.groups)}: {', '.join(record.groups)}"}
        table.add_row(*(cells[column] for column in columns))
    return table


def _check_columns(columns: Sequence[str], known: Sequence[str]) -> None:
    unknown = set(columns) - set(known)
    if unknown:
        raise ValueError(f"unknown column(s) {sorted(unknown)}; known: {tuple(known)}")


def _cells(letter: DeadLetter, width: int) -> dict[str, str]:
    return {
        "partition@offset": f"{letter.source_partition}@{letter.source_offset}",
        "error": letter.error_type,
        "reason": letter.reason,
        "value": value_cell(letter, width),
    }


@app.command("show")
def show(
    topic: str = typer.Argument(..., help="Data topic whose dead letters to show (transactions)."),
    limit: int = typer.Option(50, min=1, help="Show at most this many records (dead letters "
                                             "with --per-group)."),
    per_group: bool = typer.Option(
        False, "--per-group",
        help="One row per dead letter, i.e. per record and consumer group that failed on it "
             "(default: one row per record, with the groups that dead-lettered it)."),
    bootstrap_servers: str = typer.Option(
        None, help="Kafka bootstrap servers (default: RTML_KAFKA_BOOTSTRAP_SERVERS)."
    ),
) -> None:
    """List dead-lettered records of TOPIC with their reasons."""
    bootstrap = bootstrap_servers or KafkaSettings().bootstrap_servers
    try:
        if per_group:
            letters = read_dead_letters(bootstrap, topic, limit)
        else:
            found = distinct_records(iter_dead_letters(bootstrap, topic, None), limit)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="TOPIC") from None
    except KafkaException as exc:
        console.print(f"[red]cannot read from {bootstrap}: {exc}[/red]")
        raise typer.Exit(1) from None
    if per_group:
        console.print(dead_letter_table(
            topic, letters, title=f"{dead_letter_topic(topic)}: {len(letters)} dead letter(s), "
                                  "one per record and consumer group that failed on it"))
        errors = Counter(letter.error_type for letter in letters)
    else:
        console.print(record_table(topic, found))
        errors = Counter(record.letter.error_type for record in found.records)
        if found.total_dead_letters > found.total_records:
            console.print(f"{found.total_dead_letters} dead letters for {found.total_records} "
                          "record(s): several consumer groups failed on the same records "
                          "(--per-group lists each group's dead letter)")
    if errors:
        console.print("by error type: " + ", ".join(f"{k}={v}" for k, v in errors.most_common()))
