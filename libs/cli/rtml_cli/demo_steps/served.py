"""The feature set a demo run serves, chosen by ``--feature-repo`` / ``--feature-set``.

Every part of the platform reads the served set from ``RTML_FEATURE_REPO`` and
``RTML_FEATURE_SET``; the demo sets both in its own process (the replay, the
feature worker, training and the traffic source run in it) and passes them to
every service ``rtml up`` starts. A set whose event schema declares fields the
handbook's data set lacks (the payments example's device, IP address,
merchant category, country, channel) is fed from the simulator's rich mode,
in a data set directory of its own so the handbook's cached data set stays
as it is, and its models are registered under a name of their own so the
handbook's champion is not replaced.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from rtml_cli.demo_steps.context import DemoError, DemoSettings
from rtml_simulator.config import RichMode

#: Where a rich data set goes when ``--data`` is not given (beside the handbook's).
RICH_DATA_DIR = Path("data/simulator-rich")


def select_feature_set(settings: DemoSettings, data_given: bool) -> DemoSettings:
    """Export the served set's variables into this process and fit the settings to it:
    rich simulation and its own data directory when its schema needs more fields, a model
    name of its own when it is not the handbook's default set."""
    env = settings.feature_env()
    if not env:
        return settings
    os.environ.update(env)
    from rtml_cli.traffic.source import SourceError, served_extra_fields
    from rtml_features.baseline import default_feature_set

    try:
        extra = served_extra_fields()
    except SourceError as exc:
        raise DemoError(str(exc)) from None
    name = default_feature_set()
    if extra:
        settings = replace(settings, simulation=replace(settings.simulation, rich=RichMode()))
        if not data_given:
            settings = replace(settings, data_dir=RICH_DATA_DIR)
    return replace(settings, model_name=f"{settings.model_name}-{name}")
