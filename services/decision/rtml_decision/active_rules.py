"""The active rule sets, swapped atomically on upload (hot reload without dropping requests).

A request reads :attr:`ActiveRules.current` once and keeps that immutable
:class:`RuleSets` for its whole life, so an activation in between never
mixes two versions inside one decision, and every decision records the
version that decided it. Activation is one attribute assignment, atomic
under the GIL, so no lock is held on the request path.

Every process of a deployment converges on the set stored in Redis
(:mod:`rtml_decision.rule_store`, followed by :mod:`rtml_decision.rule_sync`):
each shared activation carries a *revision*, and :meth:`ActiveRules.activate`
only ever moves to a higher one, so a late or repeated announcement never
brings an older set back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from rtml_common.events import utcnow
from rtml_decision.rules import DEFAULT_RULES, FALLBACK_RULES, RuleInputs, RuleSet, load_rule_set


@dataclass(frozen=True)
class RuleSets:
    """The rule set deciding normal requests and the one answering degraded ones."""

    primary: RuleSet
    fallback: RuleSet
    activated_at: datetime
    source: str
    #: The activation's revision in the shared store; 0: the configured file, never shared.
    revision: int = 0
    #: The primary set's YAML as activated (shared sets only): what is stored again if
    #: Redis loses it.
    text: str | None = None


class ActiveRules:
    """Holds the current :class:`RuleSets`; :meth:`activate` swaps the primary one."""

    def __init__(self, primary: RuleSet, fallback: RuleSet, source: str) -> None:
        self.current = RuleSets(primary, fallback, utcnow(), source)
        self._write_lock = threading.Lock()  # serialises uploads, never taken by requests
        #: Called with the new state after each swap (the revision gauge).
        self.on_change: Callable[[RuleSets], None] | None = None

    @classmethod
    def from_paths(cls, rules_path: Path | None, fallback_path: Path | None,
                   inputs: RuleInputs | None = None) -> ActiveRules:
        """Load (and validate) the configured files, or the built-in ones, against
        ``inputs``: the served schema's and feature set's (:mod:`rtml_decision.rules.inputs`)."""
        primary_path = rules_path or DEFAULT_RULES
        return cls(load_rule_set(primary_path, inputs=inputs),
                   load_rule_set(fallback_path or FALLBACK_RULES, inputs=inputs),
                   str(primary_path))

    def activate(self, rule_set: RuleSet, source: str, revision: int | None = None,
                 activated_at: datetime | None = None, text: str | None = None) -> RuleSets:
        """Make an already validated ``rule_set`` the primary one; returns the state now active.

        With a ``revision`` (a shared activation), a revision not above the
        one held changes nothing: the state returned is then the newer one
        already active.
        """
        with self._write_lock:
            if revision is not None and revision <= self.current.revision:
                return self.current
            self.current = replace(self.current, primary=rule_set,
                                   activated_at=activated_at or utcnow(), source=source,
                                   revision=self.current.revision if revision is None
                                   else revision, text=text)
            state = self.current
        if self.on_change is not None:
            self.on_change(state)
        return state
