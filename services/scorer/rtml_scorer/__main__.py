"""``python -m rtml_scorer``: check the configuration, then stop honestly.

The service (issue #5) is not built yet: exit code 2 names a bad variable,
78 means valid but not implemented. See
:func:`rtml_common.service_config.exit_not_implemented`.
"""

from __future__ import annotations

import sys

from rtml_common.service_config import exit_not_implemented
from rtml_scorer import ISSUE, SERVICE_NAME
from rtml_scorer.config import ENV_PREFIX, SHARED_SETTINGS_USED, Settings


def main() -> int:
    """Validate the configuration from the environment; return the process exit code."""
    return exit_not_implemented(SERVICE_NAME, ISSUE, Settings, SHARED_SETTINGS_USED, ENV_PREFIX)


if __name__ == "__main__":
    sys.exit(main())
