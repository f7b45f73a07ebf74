"""The handbook's feature set: the 15 baseline fraud features, and the registry of sets.

Three row features (amount, weekend, night), the customer's number of
transactions and mean amount over the last 1, 7 and 30 days (including the
current transaction), and the terminal's number of transactions and fraud
risk over 1, 7 and 30-day windows shifted back by a 7-day label delay — the
time fraud labels take to arrive. Adding a feature is one more entry here.

>>> len(BASELINE.names)
15
>>> BASELINE.names[:4]
['tx_amount', 'tx_during_weekend', 'tx_during_night', 'customer_id_nb_tx_1day_window']
"""

from __future__ import annotations

import os
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
)

#: Feature sets known by name (config ``RTML_FEATURE_PIPELINE_FEATURE_SET`` and the
#: other services' ``*_FEATURE_SET``): this one and :data:`rtml_features.extended.EXTENDED`.
REGISTRY: dict[str, FeatureSet] = {BASELINE.name: BASELINE}

# The extended set is built from this module's features and registers itself here. Imported
# last, so whichever of the two modules is imported first, both sets are registered: this
# import finds BASELINE and REGISTRY already defined (baseline first), or finds the extended
# module already importing (extended first) and lets it finish and register.
import rtml_features.extended  # noqa: E402,F401

#: The platform-wide setting naming the feature set every service and command computes,
#: checks or trains on unless its own setting (``RTML_FEATURE_PIPELINE_FEATURE_SET``,
#: ``rtml train --feature-set`` ...) says otherwise: one variable moves the whole stack.
FEATURE_SET_ENV = "RTML_FEATURE_SET"
#: The richer set the platform ships as its default; ``baseline`` stays available by name.
DEFAULT_FEATURE_SET = "extended"


def default_feature_set() -> str:
    """The feature set a service or command uses when nothing more specific is configured.

    ``RTML_FEATURE_SET`` when set, else :data:`DEFAULT_FEATURE_SET`. Read at each call (not
    at import), so a setting made before a service builds its configuration is honoured.

    >>> DEFAULT_FEATURE_SET in REGISTRY
    True
    """
    return os.environ.get(FEATURE_SET_ENV) or DEFAULT_FEATURE_SET


def get_feature_set(name: str) -> FeatureSet:
    """A registered feature set, with the known names in the error."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"unknown feature set {name!r}; known: {known}") from None
