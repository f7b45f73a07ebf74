"""``rtml dlq``: see what was dead-lettered and why."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from rtml_common.config import KafkaSettings
from rtml_common.kafka.dead_letter import DeadLetter
from rtml_common.kafka.reader import iter_topic
from rtml_common.topics import dead_letter_topic, spec_for

app = typer.Typer(help="Inspect dead-letter topics.", no_args_is_help=True)
console = Console()


def read_dead_letters(bootstrap_servers: str, topic: str, limit: int | None,
                      idle_timeout_s: float = 2.0) -> list[DeadLetter]:
    """The dead-lettered records of ``topic`` (a data topic name), oldest first."""
    spec_for(topic)  # precise error for a typo before touching the broker
    return [
        DeadLetter.from_message(message)
        for message in iter_topic(bootstrap_servers, dead_letter_topic(topic), limit,
                                  idle_timeout_s=idle_timeout_s)
    ]


#: Every column :func:`dead_letter_table` can show, in display order.
COLUMNS = ("partition@offset", "group", "error", "reason", "value")


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
                      columns: Sequence[str] = COLUMNS) -> Table:
    """A table of dead letters: origin, error type, reason and a value preview.

    ``columns`` picks a subset (narrow terminals: the reason matters most).
    """
    unknown = set(columns) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown column(s) {sorted(unknown)}; known: {COLUMNS}")
    table = Table(title=f"{dead_letter_topic(topic)}: {len(letters)} record(s)")
    for column in columns:
        table.add_column(column, overflow="fold")
    for letter in letters:
        cells = {
            "partition@offset": f"{letter.source_partition}@{letter.source_offset}",
            "group": letter.consumer_group,
            "error": letter.error_type,
            "reason": letter.reason,
            "value": value_cell(letter, width),
        }
        table.add_row(*(cells[column] for column in columns))
    return table


@app.command("show")
def show(
    topic: str = typer.Argument(..., help="Data topic whose dead letters to show (transactions)."),
    limit: int = typer.Option(50, min=1, help="Show at most this many records."),
    bootstrap_servers: str = typer.Option(
        None, help="Kafka bootstrap servers (default: RTML_KAFKA_BOOTSTRAP_SERVERS)."
    ),
) -> None:
    """List dead-lettered records of TOPIC with their reasons."""
    bootstrap = bootstrap_servers or KafkaSettings().bootstrap_servers
    try:
        letters = read_dead_letters(bootstrap, topic, limit)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="TOPIC") from None
    except KafkaException as exc:
        console.print(f"[red]cannot read from {bootstrap}: {exc}[/red]")
        raise typer.Exit(1) from None
    console.print(dead_letter_table(topic, letters))
    if letters:
        counts = Counter(letter.error_type for letter in letters)
        console.print("by error type: " + ", ".join(f"{k}={v}" for k, v in counts.most_common()))
