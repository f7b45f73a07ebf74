"""The shared rule store and its sync on a real Redis: revisions order activations, and a
stored set is validated again before anything is swapped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from rtml_decision.active_rules import ActiveRules
from rtml_decision.metrics import DecisionMetrics
from rtml_decision.rule_store import RuleStore
from rtml_decision.rule_sync import RuleSync
from rtml_decision.rules import RuleSet, parse_rule_set

pytestmark = pytest.mark.integration

RULES = """
name: stored
version: "{version}"
rules:
  - {{name: big, when: "amount >= 1000", outcome: review, reason: BIG}}
"""


def rule_set(version: str) -> RuleSet:
    return parse_rule_set(RULES.format(version=version))


@pytest.fixture
def store(redis_server: Any) -> Iterator[RuleStore]:
    client = redis.Redis.from_url(redis_server.url)
    yield RuleStore(client, f"rtml:test-rules-{uuid.uuid4().hex[:10]}:")
    client.close()


def follower(store: RuleStore) -> tuple[ActiveRules, RuleSync]:
    rules = ActiveRules.from_paths(None, None)
    validated: list[str] = []

    def validate(text: str, source: str) -> RuleSet:
        validated.append(source)
        return parse_rule_set(text, source)

    return rules, RuleSync(rules, store, validate, DecisionMetrics())


def test_each_activation_gets_the_next_revision_and_the_store_holds_the_last(
        store: RuleStore) -> None:
    assert store.revision() == 0 and store.load() is None
    first, _ = store.activate(rule_set("1"), RULES.format(version="1"), "upload")
    second, at = store.activate(rule_set("2"), RULES.format(version="2"), "upload")

    assert second == first + 1 == 2
    stored = store.load()
    assert stored is not None
    assert (stored.revision, stored.version, stored.source) == (2, rule_set("2").version,
                                                                "upload")
    assert stored.activated_at == at and stored.text == RULES.format(version="2")


def test_a_process_only_moves_to_a_higher_revision(store: RuleStore) -> None:
    rules, sync = follower(store)
    store.activate(rule_set("1"), RULES.format(version="1"), "upload")
    assert sync.sync("test") and rules.current.revision == 1

    newer = rules.activate(rule_set("9"), "upload", revision=5)  # a later upload, here
    assert rules.activate(rule_set("3"), "upload", revision=4) is newer  # stale: ignored
    store.activate(rule_set("2"), RULES.format(version="2"), "upload")  # revision 2 < 5
    assert not sync.sync("test")
    assert rules.current.primary.version == rule_set("9").version


def test_a_stored_set_is_validated_again_and_refused_once(store: RuleStore) -> None:
    rules, sync = follower(store)
    before = rules.current
    store.activate(rule_set("1"), RULES.format(version="1").replace("amount", "nope"),
                   "upload")  # tampered: an unknown input
    assert not sync.sync("test")
    assert sync.refused_revision == 1 and rules.current is before

    client = store.client
    client.hset(store.active_key, mapping={"revision": client.incr(store.revision_key),
                                           "text": RULES.format(version="other")})
    assert not sync.sync("test")  # valid text, but not the version stored with it
    assert sync.refused_revision == 2 and rules.current is before

    client.hdel(store.active_key, "text")
    client.hset(store.active_key, "revision", client.incr(store.revision_key))
    assert not sync.sync("test")  # a field missing
    assert sync.refused_revision == 3 and rules.current is before

    store.activate(rule_set("4"), RULES.format(version="4"), "upload")
    assert sync.sync("test") and rules.current.revision == 4
    assert rules.current.primary.version == rule_set("4").version
