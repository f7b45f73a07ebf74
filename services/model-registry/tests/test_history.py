"""Rollback targets: history is walked back, not toggled."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from rtml_model_registry.audit.base import AuditAction
from rtml_model_registry.history import NoEarlierVersion, replay, rollback_target

SET, REMOVE, ROLLBACK = AuditAction.SET, AuditAction.REMOVE, AuditAction.ROLLBACK


@dataclass(frozen=True)
class Entry:
    action: AuditAction
    from_version: str | None
    to_version: str | None


def sets(*versions: str) -> list[Entry]:
    previous: str | None = None
    entries = []
    for version in versions:
        entries.append(Entry(SET, previous, version))
        previous = version
    return entries


def test_rollbacks_walk_back_through_history() -> None:
    log = sets("1", "2", "3")
    assert rollback_target(log, "3") == "2"
    log.append(Entry(ROLLBACK, "3", "2"))
    assert rollback_target(log, "2") == "1"
    log.append(Entry(ROLLBACK, "2", "1"))
    with pytest.raises(NoEarlierVersion, match="unset before v1"):
        rollback_target(log, "1")


def test_a_removed_alias_rolls_back_to_what_it_pointed_at() -> None:
    log = [*sets("1", "2"), Entry(REMOVE, "2", None)]
    assert replay(log) == [None, "1", "2", None]
    assert rollback_target(log, None) == "2"


def test_an_alias_moved_outside_the_service_is_not_guessed() -> None:
    with pytest.raises(NoEarlierVersion, match="points at v9 but its last audited change left "
                                               "it at v2"):
        rollback_target(sets("1", "2"), "9")
    with pytest.raises(NoEarlierVersion, match="no change of this alias"):
        rollback_target([], "1")


def test_a_first_entry_from_an_unaudited_version_counts_as_history() -> None:
    assert rollback_target([Entry(SET, "4", "5")], "5") == "4"
