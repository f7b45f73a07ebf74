"""SurvivorFreezer: survivors leave the collector's generations; young cycles are still freed."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from rtml_common.gc_policy import SurvivorFreezer, automatic_collection_paused


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Leave the interpreter as found: other tests must not inherit frozen objects."""
    yield
    gc.unfreeze()


def test_survivors_are_frozen_and_cycles_made_before_are_collected(unfrozen: None) -> None:
    state = {f"entity-{i}": [float(i)] * 3 for i in range(2000)}
    garbage = []
    garbage.append(garbage)  # a young reference cycle
    del garbage
    frozen_before = gc.get_freeze_count()
    freezer = SurvivorFreezer(interval_s=0.0)
    assert freezer.maybe_freeze()
    assert gc.get_freeze_count() - frozen_before >= len(state)  # the dict's lists at least
    assert gc.collect() == 0  # the cycle went in the young collection, not into the freeze
    assert freezer.freezes == 1


def test_the_interval_limits_freezes(unfrozen: None) -> None:
    freezer = SurvivorFreezer(interval_s=3600.0)
    assert not freezer.maybe_freeze()
    freezer.freeze()
    assert freezer.freezes == 1
    assert not freezer.maybe_freeze()


def test_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        SurvivorFreezer(interval_s=-1.0)


def test_automatic_collection_is_paused_for_the_block_and_restored_even_on_error() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), automatic_collection_paused():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with automatic_collection_paused():
            pass
        assert not gc.isenabled()  # it was off before: left off
    finally:
        gc.enable()
