"""The handbook's feature set: the 15 baseline fraud features.

Three row features (amount, weekend, night), the customer's number of
transactions and mean amount over the last 1, 7 and 30 days (including the
current transaction), and the terminal's number of transactions and fraud
risk over 1, 7 and 30-day windows shifted back by a 7-day label delay — the
time fraud labels take to arrive. Adding a feature is one more entry here.

``rtml_features.baseline`` exposes these objects (``BASELINE``, ``CUSTOMER``,
``TERMINAL`` ...) by loading this repo.
"""

from datetime import timedelta

from rtml_features.definitions import (
    Agg,
    Entity,
    Feature,
    FeatureSet,
    Ratio,
    RowFeature,
    RowKind,
    WindowAggregate,
)

from .schema import TRANSACTION_SCHEMA

CUSTOMER = Entity("customer", key="customer_id")
TERMINAL = Entity("terminal", key="terminal_id")
WINDOW_DAYS = (1, 7, 30)
LABEL_DELAY = timedelta(days=7)


def _customer_features() -> list[Feature]:
    features: list[Feature] = []
    for days in WINDOW_DAYS:
        window = timedelta(days=days)
        features += [
            WindowAggregate(f"customer_id_nb_tx_{days}day_window", CUSTOMER, Agg.COUNT, window),
            WindowAggregate(f"customer_id_avg_amount_{days}day_window", CUSTOMER, Agg.MEAN,
                            window, field="amount"),
        ]
    return features


def _terminal_features() -> list[Feature]:
    features: list[Feature] = []
    for days in WINDOW_DAYS:
        window = timedelta(days=days)
        count = WindowAggregate(f"terminal_id_nb_tx_{days}day_window", TERMINAL, Agg.COUNT,
                                window, label_delay=LABEL_DELAY)
        frauds = WindowAggregate(f"terminal_id_nb_fraud_{days}day_window", TERMINAL, Agg.SUM,
                                 window, field="is_fraud", label_delay=LABEL_DELAY)
        features += [count, Ratio(f"terminal_id_risk_{days}day_window", frauds, count)]
    return features


BASELINE = FeatureSet(
    "baseline",
    [
        RowFeature("tx_amount", RowKind.FIELD, field="amount"),
        RowFeature("tx_during_weekend", RowKind.WEEKEND),
        RowFeature("tx_during_night", RowKind.NIGHT, night_end_hour=6),
        *_customer_features(),
        *_terminal_features(),
    ],
    description="Customer spending and terminal risk windows of the reference fraud handbook.",
    schema=TRANSACTION_SCHEMA,
)
