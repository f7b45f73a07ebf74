"""The shared rule store and its sync on a real Redis: revisions order activations, and a
stored set is validated again before anything is swapped."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
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

    assert second > first > 0
    stored = store.load()
    assert stored is not None
    assert (stored.revision, stored.version, stored.source) == (second, rule_set("2").version,
                                                                "upload")
    assert stored.activated_at == at and stored.text == RULES.format(version="2")


def test_a_process_only_moves_to_a_higher_revision(store: RuleStore) -> None:
    rules, sync = follower(store)
    first, _ = store.activate(rule_set("1"), RULES.format(version="1"), "upload")
    assert sync.sync("test") and rules.current.revision == first

    newer = rules.activate(rule_set("9"), "upload", revision=first + 5)  # a later upload
    assert rules.activate(rule_set("3"), "upload", revision=first + 4) is newer  # stale
    store.client.hset(store.active_key, mapping={  # a store behind this process
        "revision": first + 3, "text": RULES.format(version="2"),
        "version": rule_set("2").version})
    assert not sync.sync("test")
    assert rules.current.primary.version == rule_set("9").version


def test_a_stored_set_is_validated_again_and_refused_once(store: RuleStore) -> None:
    rules, sync = follower(store)
    before = rules.current
    tampered, _ = store.activate(rule_set("1"), RULES.format(version="1").replace(
        "amount", "nope"), "upload")  # an unknown input
    assert not sync.sync("test")
    assert sync.refused_revision == tampered and rules.current is before

    client = store.client
    other = client.incr(store.revision_key)
    client.hset(store.active_key, mapping={"revision": other,
                                           "text": RULES.format(version="other")})
    assert not sync.sync("test")  # valid text, but not the version stored with it
    assert sync.refused_revision == other and rules.current is before

    client.hdel(store.active_key, "text")
    missing = client.incr(store.revision_key)
    client.hset(store.active_key, "revision", missing)
    assert not sync.sync("test")  # a field missing
    assert sync.refused_revision == missing and rules.current is before

    valid, _ = store.activate(rule_set("4"), RULES.format(version="4"), "upload")
    assert sync.sync("test") and rules.current.revision == valid > missing
    assert rules.current.primary.version == rule_set("4").version


def test_the_follower_thread_survives_a_redis_restart(fresh_redis_server: Any) -> None:
    """Announcements reach a follower before and after Redis went away and came back
    empty (the periodic re-read is out of reach here: it is the subscription that
    recovers), and the follower stores the set it holds again for the others."""
    prefix = f"rtml:test-rules-{uuid.uuid4().hex[:10]}:"
    following = RuleStore.from_url(fresh_redis_server.url, prefix)
    rules, _ = follower(following)
    sync = RuleSync(rules, following, lambda text, source: parse_rule_set(text, source),
                    DecisionMetrics(), refresh_interval_s=600)
    writer = RuleStore.from_url(fresh_redis_server.url, prefix)
    sync.start()
    try:
        time.sleep(0.3)  # subscribed
        revision, _ = writer.activate(rule_set("1"), RULES.format(version="1"), "upload")
        wait(lambda: rules.current.revision == revision)

        fresh_redis_server.stop()
        time.sleep(1.5)  # the follower notices and retries
        fresh_redis_server.start()  # empty: no persistence
        # the follower re-subscribes, finds the store behind it and stores its set again
        wait(lambda: (stored := writer.load()) is not None and stored.revision == revision
             and stored.version == rule_set("1").version)
        revision, _ = writer.activate(rule_set("2"), RULES.format(version="2"), "upload")
        wait(lambda: rules.current.primary.version == rule_set("2").version)
    finally:
        sync.stop()
        following.close()
        writer.close()


def wait(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except redis.ConnectionError:  # Redis still starting
            pass
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)
