"""The payment event of the richer example: the handbook's fields plus what a risk team has.

A device, an IP address, the merchant's category, the country and the channel of
each payment, produced by the simulator's ``--rich`` mode. Every field the
features below read is declared here; nothing else in the platform knows them.
"""

from rtml_common.schema import EventSchema, Field, FieldType

#: Merchant categories, in the order the categorical features encode them.
MERCHANT_CATEGORIES = ("grocery", "fuel", "restaurants", "fashion", "electronics",
                       "travel", "online_services", "gaming")
#: Channels, in encoding order.
CHANNELS = ("pos", "web", "app")

PAYMENT = EventSchema(
    name="payment",
    topic="transactions",
    description="A card payment with its device, IP address, merchant category, country "
                "and channel.",
    id_field="transaction_id",
    event_time="event_time",
    partition_key="customer_id",
    fields=[
        Field("transaction_id", FieldType.STRING, max_length=128),
        Field("event_time", FieldType.TIMESTAMP),
        Field("customer_id", FieldType.STRING, max_length=128,
              description="Card / customer id; the partition key."),
        Field("terminal_id", FieldType.STRING, required=False, max_length=128),
        Field("amount", FieldType.NUMBER, minimum=0, maximum=1e9),
        Field("currency", FieldType.STRING, required=False, default="EUR", min_length=3,
              max_length=3),
        Field("device_id", FieldType.STRING, max_length=128,
              description="The device (browser or phone fingerprint, or the card reader)."),
        Field("ip_address", FieldType.STRING, required=False, max_length=45,
              description="Client IP address (absent for card-present payments)."),
        Field("merchant_category", FieldType.STRING, categories=MERCHANT_CATEGORIES),
        Field("country", FieldType.STRING, min_length=2, max_length=2,
              description="ISO 3166-1 alpha-2 country of the payment."),
        Field("channel", FieldType.STRING, categories=CHANNELS),
    ],
)
