"""What alias names mean, in one place for the registry service, scorers and decisions.

* ``champion`` — scores live traffic; its score drives decisions.
* ``challenger``, ``shadow`` and ``shadow-<suffix>`` — scored beside the
  champion on (a sample of) live traffic, never acted on; the shadow auditor
  compares them with the champion and may graduate one.

>>> is_valid_alias("shadow-river"), is_shadow_alias("challenger"), is_shadow_alias("champion")
(True, True, False)
>>> is_valid_alias("Champion")
False
"""

from __future__ import annotations

import re

CHAMPION = "champion"
CHALLENGER = "challenger"
SHADOW = "shadow"

#: Lowercase, so alias names are unambiguous in URLs, metrics labels and events.
ALIAS_PATTERN = re.compile(r"^(champion|challenger|shadow(-[a-z0-9][a-z0-9_-]{0,38})?)$")


def is_valid_alias(alias: str) -> bool:
    """True for the alias names rtml gives a meaning to."""
    return ALIAS_PATTERN.fullmatch(alias) is not None


def is_shadow_alias(alias: str) -> bool:
    """True for aliases whose models are scored in shadow (never acted on)."""
    return is_valid_alias(alias) and alias != CHAMPION
