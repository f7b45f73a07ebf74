"""The ``payments`` feature set: the handbook's 15 features plus velocity and novelty signals.

What the handbook's features cannot see and these can:

* **Account takeover** — a fraudster with a stolen card on their own device, from
  another country, spending big: the card's age on this device and in this country
  (``time_since_first`` over compound card x device / card x country entities, 0
  for a first sight), the card's distinct devices and countries in a day, how
  unusual the amount is for the card (its 30-day standard deviation and last amount).
* **Card testing** — many cards tried from one device or IP address in minutes with
  small amounts: the device's and IP address's distinct cards and payment counts
  over 10 minutes and an hour.
"""

from datetime import timedelta

from rtml_features.baseline import BASELINE
from rtml_features.definitions import (
    LIFETIME,
    Agg,
    Entity,
    FeatureSet,
    RowFeature,
    RowKind,
    WindowAggregate,
    one_hot,
)

from .schema import CHANNELS, PAYMENT

CARD = Entity("customer", key="customer_id")
DEVICE = Entity("device", key="device_id")
IP = Entity("ip", key="ip_address")
CARD_DEVICE = Entity("card_device", key=("customer_id", "device_id"))
CARD_COUNTRY = Entity("card_country", key=("customer_id", "country"))

TEN_MINUTES = timedelta(minutes=10)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
MONTH = timedelta(days=30)
#: Seconds reported when there is no previous payment (a month: "long ago").
NO_PREVIOUS_S = MONTH.total_seconds()

PAYMENTS = FeatureSet(
    "payments",
    [
        *BASELINE.features,
        RowFeature("tx_hour", RowKind.HOUR_OF_DAY),
        RowFeature("tx_merchant_category", RowKind.CATEGORY_CODE, field="merchant_category"),
        *one_hot("tx_channel", "channel", CHANNELS),
        # account takeover: novelty of the device and country for this card
        WindowAggregate("card_device_age_s", CARD_DEVICE, Agg.TIME_SINCE_FIRST, LIFETIME),
        WindowAggregate("card_country_age_s", CARD_COUNTRY, Agg.TIME_SINCE_FIRST, LIFETIME),
        WindowAggregate("card_distinct_devices_1day", CARD, Agg.COUNT_DISTINCT, DAY,
                        field="device_id"),
        WindowAggregate("card_distinct_countries_1day", CARD, Agg.COUNT_DISTINCT, DAY,
                        field="country"),
        WindowAggregate("card_seconds_since_previous", CARD, Agg.TIME_SINCE_PREVIOUS, MONTH,
                        empty=NO_PREVIOUS_S),
        WindowAggregate("card_last_amount", CARD, Agg.LAST, MONTH, field="amount"),
        WindowAggregate("card_amount_stddev_30day", CARD, Agg.STDDEV, MONTH, field="amount"),
        # card testing: many cards from one device or IP address in minutes
        WindowAggregate("device_nb_tx_10min", DEVICE, Agg.COUNT, TEN_MINUTES),
        WindowAggregate("device_distinct_cards_1hour", DEVICE, Agg.COUNT_DISTINCT, HOUR,
                        field="customer_id"),
        WindowAggregate("ip_nb_tx_10min", IP, Agg.COUNT, TEN_MINUTES),
        WindowAggregate("ip_distinct_cards_1hour", IP, Agg.COUNT_DISTINCT, HOUR,
                        field="customer_id"),
        WindowAggregate("ip_amount_10min", IP, Agg.SUM, TEN_MINUTES, field="amount"),
    ],
    schema=PAYMENT,
    description="The handbook's features plus account-takeover and card-testing signals "
                "over devices, IP addresses and countries.",
)
