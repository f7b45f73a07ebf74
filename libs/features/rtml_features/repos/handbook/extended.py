"""The ``extended`` feature set: the baseline plus the customer's amount range.

The baseline's 15 features come first, unchanged and in the same order, so a
model's first 15 inputs mean the same in both sets. Then three that earned
their place in the ablation (docs/training.md, ``bench/feature_ablation.py``):
the customer's 7 and 30-day largest and 30-day smallest amounts (the range the
card usually spends in). ``rtml_features.extended`` tells the whole story and
exposes ``EXTENDED`` by loading this repo.
"""

from datetime import timedelta

from rtml_features.definitions import Agg, FeatureSet, WindowAggregate

from .baseline import BASELINE, CUSTOMER

WEEK = timedelta(days=7)
MONTH = timedelta(days=30)

EXTENDED = FeatureSet(
    "extended",
    [
        *BASELINE.features,
        WindowAggregate("customer_id_max_amount_7day_window", CUSTOMER, Agg.MAX, WEEK,
                        field="amount"),
        WindowAggregate("customer_id_max_amount_30day_window", CUSTOMER, Agg.MAX, MONTH,
                        field="amount"),
        WindowAggregate("customer_id_min_amount_30day_window", CUSTOMER, Agg.MIN, MONTH,
                        field="amount"),
    ],
    description="The baseline plus the customer's amount range (7/30-day max, 30-day min).",
)
