"""The README's "call the API, produce your own events" examples work as printed.

A newcomer copies them first; a renamed field or a changed topic would make
the first thing they try fail. The producer snippet is run as written (only
the broker address swapped for the test broker's) and its record read back
and decoded as the platform decodes ``transactions``; the curl line's body is
expanded by bash exactly as a shell would and validated as the API validates
its request body.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from rtml_common.events import Transaction
from rtml_common.kafka.admin import ensure_topics
from rtml_common.serde import decode
from rtml_localstack.testing import KafkaBroker

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Call the API, produce your own events"


def _section() -> str:
    text = README.read_text()
    assert SECTION in text, "the README lost its API / producer section"
    return text.split(SECTION, 1)[1].split("\n## ", 1)[0]


def _block(language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", _section(), flags=re.S)
    assert len(blocks) == 1, f"expected one {language} block in the README section"
    return str(blocks[0])


def test_curl_body_is_a_valid_decision_request() -> None:
    line = next(line for line in _block("bash").splitlines() if line.startswith("curl"))
    assert "localhost:8080/v1/decisions" in line
    assert "Content-Type: application/json" in line
    quoted = line.split(" -d ", 1)[1]
    body = subprocess.run(["bash", "-c", f"printf %s {quoted}"], check=True,
                          capture_output=True, text=True).stdout
    transaction = Transaction.model_validate_json(body)  # the API's own request model
    assert transaction.transaction_id.startswith("tx-")
    assert transaction.amount == 57.16


@pytest.mark.integration
def test_producer_snippet_produces_a_valid_transaction(fresh_kafka_broker: KafkaBroker) -> None:
    kafka_broker = fresh_kafka_broker  # its own: no other test's transactions to read past
    snippet = _block("python")
    assert '"127.0.0.1:9092"' in snippet
    topic = "transactions"
    ensure_topics(kafka_broker.bootstrap_servers, [topic], replication_factor=1)
    exec(compile(snippet.replace("127.0.0.1:9092", kafka_broker.bootstrap_servers),
                 "README.md", "exec"), {})
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap_servers,
                         "group.id": f"readme-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        found: Transaction | None = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            event = decode(message.value(), Transaction, message.headers())
            if event.transaction_id == "tx-own-1":
                assert message.key() == event.customer_id.encode()
                found = event
                break
    finally:
        consumer.close()
    assert found is not None, "the README's record never arrived"
    assert found.amount == 12.5 and found.terminal_id == "7"
