"""Demo step: produce three broken records, to show dead-lettering.

Real producers make mistakes; the platform's answer is that every consumer
sends a record it cannot decode to ``<topic>.dlq`` with the exact reason, and
carries on. The three records below are the classic cases: bytes that are
not JSON, a value that breaks a field constraint, and a timestamp without a
timezone (rejected because a window computed in the wrong timezone is
silently wrong for hours).
"""

from __future__ import annotations

from dataclasses import dataclass

from rtml_cli.demo_steps.context import RUN_HEADER, DemoContext, DemoError
from rtml_common.config import KafkaSettings
from rtml_common.events import Transaction
from rtml_common.kafka.producer import DeliveryError, EventProducer
from rtml_common.serde import headers_for

TOPIC = "transactions"
KEY = b"demo-customer"


@dataclass(frozen=True)
class MalformedRecord:
    """A deliberately broken record and the reason a consumer must give for it."""

    name: str
    #: What is wrong with it, for the progress line.
    detail: str
    value: bytes
    #: A fragment of the dead-letter reason the consumer loop must produce.
    expected_reason: str


def malformed_records(run_id: str) -> list[MalformedRecord]:
    """The three broken transactions of one run (ids made unique by ``run_id``)."""
    def tx(suffix: str, event_time: str, amount: str) -> bytes:
        return (
            f'{{"transaction_id":"demo-{run_id}-{suffix}","event_time":"{event_time}",'
            f'"customer_id":"demo-customer","terminal_id":"demo-terminal","amount":{amount}}}'
        ).encode()

    return [
        MalformedRecord("invalid JSON", "cut off after 40 bytes",
                        tx("json", "2018-04-01T12:00:00Z", "10.0")[:40], "Invalid JSON"),
        MalformedRecord("negative amount", '"amount": -12.5',
                        tx("amount", "2018-04-01T12:00:00Z", "-12.5"),
                        "amount: Input should be greater than or equal to 0"),
        MalformedRecord("naive datetime", '"event_time": "2018-04-01T12:00:00" (no timezone)',
                        tx("time", "2018-04-01T12:00:00", "10.0"),
                        "datetime must be timezone-aware"),
    ]


def produce_malformed(ctx: DemoContext) -> None:
    """Send the broken records to ``transactions``, tagged with the run id."""
    bootstrap = ctx.require_kafka()
    records = malformed_records(ctx.run_id)
    headers = [*headers_for(Transaction), (RUN_HEADER, ctx.run_id.encode())]
    try:
        with EventProducer(KafkaSettings(bootstrap_servers=bootstrap)) as producer:
            for record in records:
                producer.send_raw(TOPIC, KEY, record.value, headers)
    except DeliveryError as exc:
        raise DemoError(f"could not produce the malformed records: {exc}") from exc
    ctx.malformed = records
    for record in records:
        ctx.console.print(f"  {record.name:<16} {record.detail}", markup=False,
                          highlight=False)
