"""Canary routing: deterministic per key, proportional to the weights."""

from __future__ import annotations

from collections import Counter

from rtml_decision.canary import CanaryRouter, unit_hash


def test_same_key_same_arm_in_any_router_instance() -> None:
    weights = {"champion": 90, "challenger": 10}
    first, second = CanaryRouter(weights), CanaryRouter(dict(reversed(weights.items())))
    assert all(first.arm(f"c{i}") == second.arm(f"c{i}") for i in range(2_000))


def test_split_follows_the_weights() -> None:
    router = CanaryRouter({"champion": 95, "challenger": 5})
    counts = Counter(router.arm(f"customer-{i}") for i in range(20_000))
    assert abs(counts["challenger"] / 20_000 - 0.05) < 0.01
    assert set(counts) == {"champion", "challenger"}


def test_zero_weight_arm_gets_nothing_and_no_weights_means_champion() -> None:
    router = CanaryRouter({"champion": 1, "challenger": 0})
    assert {router.arm(str(i)) for i in range(500)} == {"champion"}
    assert not CanaryRouter({}).splits and CanaryRouter({}).arm("x") == "champion"


def test_unit_hash_is_stable_and_in_range() -> None:
    assert unit_hash("customer-42") == unit_hash("customer-42")
    assert all(0 <= unit_hash(str(i)) < 1 for i in range(1_000))
