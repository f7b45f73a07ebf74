"""The handbook's feature set: the 15 baseline fraud features, and the registry of sets.

Three row features (amount, weekend, night), the customer's number of
transactions and mean amount over the last 1, 7 and 30 days (including the
current transaction), and the terminal's number of transactions and fraud
risk over 1, 7 and 30-day windows shifted back by a 7-day label delay — the
time fraud labels take to arrive.

They are declared in the handbook feature repo shipped with this package
(``rtml_features/repos/handbook/baseline.py``, see :mod:`rtml_features.repo`);
this module loads it and keeps the names the platform imports (``BASELINE``,
``CUSTOMER``, ``TERMINAL``, ``REGISTRY``, ``get_feature_set`` ...).

>>> len(BASELINE.names)
15
>>> BASELINE.names[:4]
['tx_amount', 'tx_during_weekend', 'tx_during_night', 'customer_id_nb_tx_1day_window']
>>> BASELINE.version
'9476c2716c3a'
"""

from __future__ import annotations

import os
from datetime import timedelta

from rtml_features.definitions import Entity, FeatureSet
from rtml_features.repo import FeatureRepo, configured_repo, shipped_repo

#: The handbook repo (``baseline`` and ``extended``), loaded once per process.
HANDBOOK: FeatureRepo = shipped_repo()
_declared = HANDBOOK.modules["baseline"]

CUSTOMER: Entity = _declared.CUSTOMER
TERMINAL: Entity = _declared.TERMINAL
WINDOW_DAYS: tuple[int, ...] = _declared.WINDOW_DAYS
LABEL_DELAY: timedelta = _declared.LABEL_DELAY
BASELINE: FeatureSet = HANDBOOK.feature_sets["baseline"]

#: Feature sets known by name whatever the configured repo (config
#: ``RTML_FEATURE_PIPELINE_FEATURE_SET`` and the other services' ``*_FEATURE_SET``): the
#: handbook's ``baseline`` and :data:`rtml_features.extended.EXTENDED`. A benchmark may
#: register more; the configured repo's sets are resolved by :func:`get_feature_set`.
REGISTRY: dict[str, FeatureSet] = dict(HANDBOOK.feature_sets)

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
    """A feature set by name: the handbook's (and any registered) or the configured repo's.

    The repo is the folder named by ``RTML_FEATURE_REPO`` (:func:`rtml_features.repo.
    configured_repo`, the shipped handbook repo by default); a repo that does not load
    raises its :class:`~rtml_features.repo.RepoError` here, so a service refuses to start
    with the file and line at fault. An unknown name raises ``KeyError`` with the known ones.
    """
    repo = configured_repo()
    found = REGISTRY.get(name) or repo.feature_sets.get(name)
    if found is None:
        known = ", ".join(sorted(set(REGISTRY) | set(repo.feature_sets)))
        raise KeyError(f"unknown feature set {name!r}; known: {known} (feature repo "
                       f"{repo.path})")
    return found
