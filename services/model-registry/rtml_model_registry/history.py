"""Where a rollback goes: the alias's previous version, read from the audit log.

The log of one alias is replayed as a stack of the versions it pointed at
(``None`` = unset): a set or a removal pushes the new state, a rollback pops
the current one. Rolling back therefore walks back through history
(v1 → v2 → v3, rollback → v2, rollback → v1) instead of toggling between
the last two versions.

>>> from rtml_model_registry.audit.base import AuditAction as A
>>> from types import SimpleNamespace as E
>>> log = [E(action=A.SET, from_version=None, to_version="1"),
...        E(action=A.SET, from_version="1", to_version="2"),
...        E(action=A.SET, from_version="2", to_version="3"),
...        E(action=A.ROLLBACK, from_version="3", to_version="2")]
>>> replay(log)
[None, '1', '2']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rtml_model_registry.audit.base import AuditAction


class _Change(Protocol):
    """What replaying needs of an audit entry."""

    @property
    def action(self) -> AuditAction: ...

    @property
    def from_version(self) -> str | None: ...

    @property
    def to_version(self) -> str | None: ...


class NoEarlierVersion(Exception):
    """There is nothing to roll back to (message says why)."""


def replay(entries: Sequence[_Change]) -> list[str | None]:
    """The alias's states, oldest first, the current one last."""
    stack: list[str | None] = []
    for entry in entries:
        if not stack or stack[-1] != entry.from_version:
            stack.append(entry.from_version)  # moved outside this service, or first entry
        if entry.action is AuditAction.ROLLBACK:
            stack.pop()
            if not stack or stack[-1] != entry.to_version:
                stack.append(entry.to_version)
        else:
            stack.append(entry.to_version)
    return stack


def rollback_target(entries: Sequence[_Change], current: str | None) -> str:
    """The version to roll back to, or :class:`NoEarlierVersion` saying why there is none.

    ``current`` is what the alias points at now (per the registry); if the log
    ends elsewhere the alias was moved outside this service and the log can't
    say what came before.
    """
    stack = replay(entries)
    if not stack:
        raise NoEarlierVersion("the audit log has no change of this alias")
    if stack[-1] != current:
        raise NoEarlierVersion(
            f"the alias points at {_state(current)} but its last audited change left it at "
            f"{_state(stack[-1])}: it was moved outside this service, set it explicitly")
    if len(stack) < 2 or stack[-2] is None:
        raise NoEarlierVersion(f"the alias was unset before {_state(current)}: no earlier "
                               "version to roll back to")
    return str(stack[-2])


def _state(version: str | None) -> str:
    return "nothing (unset)" if version is None else f"v{version}"
