"""Entity sampling: deterministic, at the configured rate, nested across rates, keyed."""

from __future__ import annotations

import pytest

from rtml_consistency_monitor.sampling import EntitySampler

IDS = [f"c{i}" for i in range(20_000)]


def test_same_key_same_sample_across_instances() -> None:
    a, b = EntitySampler(0.05, "k"), EntitySampler(0.05, "k")
    assert [a.sampled("customer", i) for i in IDS] == [b.sampled("customer", i) for i in IDS]


def test_rate_is_met_within_binomial_noise() -> None:
    sampler = EntitySampler(0.05, "k")
    share = sum(sampler.sampled("customer", i) for i in IDS) / len(IDS)
    # sd = sqrt(0.05 * 0.95 / 20000) = 0.0015; 5 sd either way
    assert 0.0425 < share < 0.0575


def test_rates_zero_and_one_and_missing_ids() -> None:
    assert not any(EntitySampler(0.0, "k").sampled("customer", i) for i in IDS[:1000])
    assert all(EntitySampler(1.0, "k").sampled("customer", i) for i in IDS[:1000])
    assert not EntitySampler(1.0, "k").sampled("terminal", None)


def test_a_higher_rate_keeps_every_entity_a_lower_one_had() -> None:
    low, high = EntitySampler(0.02, "k"), EntitySampler(0.1, "k")
    kept_low = {i for i in IDS if low.sampled("customer", i)}
    kept_high = {i for i in IDS if high.sampled("customer", i)}
    assert kept_low and kept_low < kept_high


def test_kind_and_key_change_the_sample() -> None:
    sampler = EntitySampler(0.1, "k")
    customers = {i for i in IDS if sampler.sampled("customer", i)}
    terminals = {i for i in IDS if sampler.sampled("terminal", i)}
    other_key = {i for i in IDS if EntitySampler(0.1, "other").sampled("customer", i)}
    # Independent samples of 10 %: they overlap by about 1 % of the ids, not 10 %.
    assert len(customers & terminals) < 0.02 * len(IDS)
    assert len(customers & other_key) < 0.02 * len(IDS)


def test_point_agrees_with_sampled() -> None:
    sampler = EntitySampler(0.3, "k")
    for i in IDS[:2000]:
        assert sampler.sampled("customer", i) == (sampler.point("customer", i) < 0.3)


def test_rate_outside_unit_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="not in"):
        EntitySampler(1.5, "k")
