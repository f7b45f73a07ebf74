"""The ``extended`` feature set: the baseline plus the customer's amount range.

Declared in the shipped handbook feature repo (``rtml_features/repos/handbook/
extended.py``); this module exposes it by loading that repo.

The baseline's 15 features come first, unchanged and in the same order, so a
model's first 15 inputs mean the same in both sets. Then three that earned
their place in the ablation (docs/training.md, ``bench/feature_ablation.py``):

* **Customer amount extremes** — ``customer_id_max_amount_7day_window``,
  ``customer_id_max_amount_30day_window`` and
  ``customer_id_min_amount_30day_window``: the range the card usually spends
  in. A fraudster's payment far above the card's largest recent one (a
  cash-out) or far below its smallest (card testing) stands out even when
  the mean, which a few payments barely move, does not. They lift the
  4-fold mean average precision from ~0.69 to ~0.71.

Candidates measured and left out, because they did not move the fold means
beyond week-to-week noise while each costs online log space and request-time
work: the customer's mean amount and known frauds over the 30 days ending a
label delay back, the terminal's 7-day mean amount (all three were in this
set's first version, ``e406ad33e345``), short customer windows (1 h / 6 h
counts, 1-day sum) and the terminal's 1-day max amount.

Every engine computes the set to 1e-9 of the batch engine: the streaming
computer and its Redis writers (both online layouts), the request-time
vectors of the decision API (prefix logs with sparse tables for the
extremes), and the Flink job (bounded OVER windows for the extremes).

>>> len(EXTENDED.names)
18
>>> EXTENDED.names[:15] == BASELINE.names
True
>>> EXTENDED.names[15:]
['customer_id_max_amount_7day_window', 'customer_id_max_amount_30day_window', \
'customer_id_min_amount_30day_window']
>>> from rtml_features.baseline import TERMINAL
>>> EXTENDED.horizon(CUSTOMER), EXTENDED.horizon(TERMINAL)
(datetime.timedelta(days=30), datetime.timedelta(days=37))
>>> EXTENDED.version
'f1c4ba41ee34'
"""

from __future__ import annotations

from datetime import timedelta

from rtml_features.baseline import BASELINE, CUSTOMER, HANDBOOK, REGISTRY
from rtml_features.definitions import FeatureSet

__all__ = ["BASELINE", "CUSTOMER", "EXTENDED", "MONTH", "REGISTRY", "WEEK"]

_declared = HANDBOOK.modules["extended"]

WEEK: timedelta = _declared.WEEK
MONTH: timedelta = _declared.MONTH
EXTENDED: FeatureSet = HANDBOOK.feature_sets["extended"]
