"""``rtml dlq show`` reads dead letters back with their reasons, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from rtml_cli.dlq import dead_letter_table, read_dead_letters, value_cell
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


def _rtml(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtml_cli", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "250"},  # wide enough that table cells don't wrap
    )


@pytest.mark.integration
def test_show_prints_the_reason_of_a_dead_lettered_record(
    fresh_kafka_broker: KafkaBroker,
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, ["transactions", "transactions.dlq"], replication_factor=1)
    settings = KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=6000)
    with EventProducer(settings) as producer:
        producer.send_raw("transactions", b"c1", NEGATIVE, headers_for(Transaction))
        producer.send_raw("transactions", b"c1", VALID, headers_for(Transaction))
    handled: list[Record[Any]] = []
    loop = ConsumerLoop({"transactions": Transaction}, "dlq-test", handled.extend, settings)
    stats = loop.run(max_idle_s=1.0)
    assert (stats.handled, stats.dead_lettered) == (1, 1)

    result = _rtml("dlq", "show", "transactions", "--bootstrap-servers", bootstrap)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "transactions.dlq: 1 record(s)" in result.stdout
    assert "Transaction: amount: Input should be greater than or equal to 0" in result.stdout
    assert "dlq-test" in result.stdout
    assert "by error type: DecodeError=1" in result.stdout
    letters = read_dead_letters(bootstrap, "transactions", None, idle_timeout_s=1.0)
    assert [letter.value for letter in letters] == [NEGATIVE]


def test_show_rejects_an_unknown_topic_before_touching_kafka() -> None:
    result = _rtml("dlq", "show", "transactoins", "--bootstrap-servers", "127.0.0.1:1")
    assert result.returncode == 2
    assert "unknown topic 'transactoins'" in result.stdout + result.stderr


def test_table_columns_can_be_narrowed() -> None:
    table = dead_letter_table("transactions", [], columns=("error", "reason"))
    assert [column.header for column in table.columns] == ["error", "reason"]
    with pytest.raises(ValueError, match="unknown column"):
        dead_letter_table("transactions", [], columns=("nope",))


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
