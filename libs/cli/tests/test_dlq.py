"""``rtml dlq show`` reads dead letters back with their reasons, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from rtml_cli.dlq import (
    RECORD_COLUMNS,
    dead_letter_table,
    distinct_records,
    read_dead_letters,
    record_table,
    value_cell,
)
from rtml_common.config import KafkaSettings
from rtml_common.events import Transaction
from rtml_common.kafka.admin import ensure_topics
from rtml_common.kafka.consumer import ConsumerLoop, Record
from rtml_common.kafka.dead_letter import (
    DeadLetter,
    dead_letter_headers,
    fit_dead_letter,
    minimal_dead_letter,
)
from rtml_common.kafka.producer import EventProducer
from rtml_common.serde import headers_for
from rtml_localstack.testing import KafkaBroker

NEGATIVE = (b'{"transaction_id":"t1","event_time":"2018-04-01T00:00:00Z",'
            b'"customer_id":"c1","amount":-3.5}')
VALID = (b'{"transaction_id":"t2","event_time":"2018-04-01T00:00:01Z",'
         b'"customer_id":"c1","amount":3.5}')


REASON = "Transaction: amount: Input should be greater than or equal to 0"


def _rtml(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user pipes it: stdout is not a terminal, and no COLUMNS is set."""
    env = {name: value for name, value in os.environ.items() if name != "COLUMNS"}
    return subprocess.run(
        [sys.executable, "-m", "rtml_cli", *args], capture_output=True, text=True, timeout=60,
        env=env,
    )


def _letter(offset: int, group: str) -> DeadLetter:
    headers = dead_letter_headers("transactions", 0, offset, group, "bad", "DecodeError", 1)
    return DeadLetter.from_parts("transactions.dlq", b"c1", b"{bad", headers)


@pytest.mark.integration
def test_show_lists_each_dead_lettered_record_once_with_the_groups_that_failed_on_it(
    fresh_kafka_broker: KafkaBroker,
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, ["transactions", "transactions.dlq"], replication_factor=1)
    settings = KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=6000)
    with EventProducer(settings) as producer:
        producer.send_raw("transactions", b"c1", NEGATIVE, headers_for(Transaction))
        producer.send_raw("transactions", b"c1", VALID, headers_for(Transaction))
    for group in ("dlq-test", "dlq-other"):  # two services reading the same topic
        handled: list[Record[Any]] = []
        loop = ConsumerLoop({"transactions": Transaction}, group, handled.extend, settings)
        stats = loop.run(max_idle_s=1.0)
        assert (stats.handled, stats.dead_lettered) == (1, 1)

    result = _rtml("dlq", "show", "transactions", "--bootstrap-servers", bootstrap)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "transactions.dlq: 1 record(s)" in result.stdout
    assert "2: dlq-test, dlq-other" in result.stdout
    assert "2 dead letters for 1 record(s)" in result.stdout
    assert "by error type: DecodeError=1" in result.stdout
    # Piped output is wide: the reason and the value are not folded at 80 columns.
    assert REASON in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) > 80
    letters = read_dead_letters(bootstrap, "transactions", None, idle_timeout_s=1.0)
    assert [letter.value for letter in letters] == [NEGATIVE, NEGATIVE]

    per_group = _rtml("dlq", "show", "transactions", "--per-group",
                      "--bootstrap-servers", bootstrap)

    assert per_group.returncode == 0, per_group.stdout + per_group.stderr
    assert "transactions.dlq: 2 dead letter(s), one per record and consumer group" \
        in per_group.stdout
    rows = [line for line in per_group.stdout.splitlines() if REASON in line]
    assert len(rows) == 2
    assert "dlq-test" in rows[0] and "dlq-other" in rows[1]
    assert "by error type: DecodeError=2" in per_group.stdout


def test_distinct_records_group_dead_letters_by_their_original_record() -> None:
    letters = [_letter(7, "scorer"), _letter(8, "scorer"), _letter(7, "features"),
               _letter(9, "features"), _letter(7, "scorer")]  # offset 7 again: a replay

    found = distinct_records(letters, limit=None)

    assert (found.total_records, found.total_dead_letters) == (3, 5)
    assert [(r.letter.source_offset, r.groups, r.dead_letters) for r in found.records] == [
        (7, ["scorer", "features"], 3), (8, ["scorer"], 1), (9, ["features"], 1)]


def test_a_limit_keeps_the_first_records_with_all_their_groups() -> None:
    letters = [_letter(7, "scorer"), _letter(8, "scorer"), _letter(7, "features")]

    found = distinct_records(letters, limit=1)

    assert (found.total_records, found.total_dead_letters) == (2, 3)
    assert [(r.letter.source_offset, r.groups) for r in found.records] == [
        (7, ["scorer", "features"])]
    table = record_table("transactions", found)
    assert table.title == "transactions.dlq: 2 record(s), first 1 shown"
    assert [column.header for column in table.columns] == list(RECORD_COLUMNS)


def test_show_rejects_an_unknown_topic_before_touching_kafka() -> None:
    result = _rtml("dlq", "show", "transactoins", "--bootstrap-servers", "127.0.0.1:1")
    assert result.returncode == 2
    assert "unknown topic 'transactoins'" in result.stdout + result.stderr


def test_table_columns_can_be_narrowed() -> None:
    table = dead_letter_table("transactions", [], columns=("error", "reason"))
    assert [column.header for column in table.columns] == ["error", "reason"]
    with pytest.raises(ValueError, match="unknown column"):
        dead_letter_table("transactions", [], columns=("nope",))
    with pytest.raises(ValueError, match="unknown column"):
        record_table("transactions", distinct_records([], None), columns=("group",))


def test_a_cut_dead_letter_shows_the_original_size_and_digest() -> None:
    failure = dead_letter_headers("transactions", 0, 7, "g", "Invalid JSON", "DecodeError", 1)
    cut = fit_dead_letter(b"c1", b"{" + b"x" * 999_956, failure, 1_000_000)
    letter = DeadLetter.from_parts("transactions.dlq", *cut)
    cell = value_cell(letter, width=10)
    assert cell.startswith("[cut: value; original 999,957 bytes, sha256 ")
    assert cell.endswith("] {xxxxxxxxx…")
    minimal = DeadLetter.from_parts("transactions.dlq", *minimal_dead_letter(
        *cut, "Broker: Invalid topic"))
    assert "minimal, broker refused the full record: Broker: Invalid topic" in value_cell(minimal)
    whole = DeadLetter.from_parts("transactions.dlq", b"c1", b"{bad", failure)
    assert value_cell(whole) == "{bad"
