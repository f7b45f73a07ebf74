"""The reference handbook's events, declared once as :class:`~rtml_common.schema.EventSchema`.

These are the default data model: a card payment at a terminal and, later, its
fraud label. The pydantic events, the lean decoders, the JSON Schemas and the
feature definitions of the ``baseline`` and ``extended`` sets read these
declarations; a user's own feature repo declares its own schemas the same way.

>>> TRANSACTION_SCHEMA.partition_key, TRANSACTION_SCHEMA.event_time
('customer_id', 'event_time')
>>> [f.name for f in TRANSACTION_SCHEMA.numeric_fields]
['amount']
>>> LABEL_SCHEMA.field("is_fraud").type
<FieldType.BOOLEAN: 'boolean'>
"""

from __future__ import annotations

from rtml_common.config import ContractSettings
from rtml_common.schema import EventSchema, Field, FieldType

#: Ids: non-empty, at most 128 characters (a longer "id" is a producer bug or an attack).
ID_MAX_LENGTH = 128

TRANSACTION_SCHEMA = EventSchema(
    name="transaction",
    topic="transactions",
    description="A card payment at a terminal, as it happens (no fraud label).",
    id_field="transaction_id",
    event_time="event_time",
    partition_key="customer_id",
    fields=[
        Field("transaction_id", FieldType.STRING, max_length=ID_MAX_LENGTH,
              description="Globally unique transaction id; the dedupe key."),
        Field("event_time", FieldType.TIMESTAMP,
              description="When the payment happened (event time)."),
        Field("customer_id", FieldType.STRING, max_length=ID_MAX_LENGTH,
              description="Card / customer id; the partition key."),
        Field("terminal_id", FieldType.STRING, required=False, max_length=ID_MAX_LENGTH,
              description="Terminal (merchant) id, absent when unknown."),
        Field("amount", FieldType.NUMBER, minimum=0, maximum=ContractSettings().max_amount,
              description="Amount in major currency units, at most "
                          "RTML_CONTRACT_MAX_AMOUNT (default 1e9)."),
        Field("currency", FieldType.STRING, required=False, default="EUR", min_length=3,
              max_length=3),
    ],
)

LABEL_SCHEMA = EventSchema(
    name="label",
    topic="labels",
    description="The fraud tag of a past transaction, known only later (chargeback, "
                "investigation).\n\nCarries the transaction's entities and event time so "
                "label-delayed features\n(e.g. terminal risk) can be joined in event time "
                "without a lookup.",
    id_field="transaction_id",
    event_time="labeled_at",
    partition_key="customer_id",
    fields=[
        Field("transaction_id", FieldType.STRING, max_length=ID_MAX_LENGTH),
        Field("customer_id", FieldType.STRING, max_length=ID_MAX_LENGTH),
        Field("terminal_id", FieldType.STRING, required=False, max_length=ID_MAX_LENGTH),
        Field("transaction_time", FieldType.TIMESTAMP,
              description="Event time of the labelled transaction."),
        Field("labeled_at", FieldType.TIMESTAMP,
              description="When the label became known (event time)."),
        Field("is_fraud", FieldType.BOOLEAN),
        Field("fraud_scenario", FieldType.INTEGER, required=False, minimum=0,
              description="Simulator scenario id (0 = genuine), when known."),
    ],
)
