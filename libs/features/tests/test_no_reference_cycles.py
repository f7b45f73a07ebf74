"""The streaming state creates no reference cycles.

The feature worker freezes its long-lived objects out of the cyclic garbage
collector (``rtml_common.gc_policy.SurvivorFreezer``): frozen objects are still
freed by reference counting, but a cycle among them would never be. So the
state must be acyclic — this test runs the streaming computer over 40 days of
out-of-order transactions and delayed labels (revisions and window evictions
included) with the collector off, then asks it to collect: anything found was
a cycle the worker would have leaked.
"""

from __future__ import annotations

import gc
import random
from datetime import timedelta

from rtml_features.baseline import BASELINE
from rtml_features.stream import StreamingFeatureComputer, restore, snapshot


def plain_events(seed: int, n: int = 4000, days: int = 40
                 ) -> list[tuple[int, int, tuple[object, ...]]]:
    """(arrival ms, kind, args): transactions (some out of order) and labels (some late)."""
    rng = random.Random(seed)
    day = 86_400_000
    events: list[tuple[int, int, tuple[object, ...]]] = []
    for i in range(n):
        at = rng.randrange(days * day)
        customer, terminal = f"c{rng.randrange(25)}", f"t{rng.randrange(15)}"
        arrival = at + rng.choice([0, 0, 30_000, 250_000])  # within the 300 s lateness
        events.append((arrival, 1, (f"tx{i}", customer, terminal, at,
                                    round(rng.gammavariate(2.0, 30.0), 2))))
        if rng.random() < 0.8:  # some transactions never get a label
            labeled = at + rng.choice([0, 3_600_000, day, 7 * day, 9 * day])
            events.append((labeled - 1, 0, (f"tx{i}", customer, terminal, at, labeled,
                                            rng.random() < 0.2)))
    events.sort(key=lambda e: (e[0], e[1]))
    return events


def test_processing_events_creates_no_cyclic_garbage() -> None:
    events = plain_events(seed=3)
    computer = StreamingFeatureComputer(BASELINE, allowed_lateness=timedelta(seconds=300))
    emitted = 0
    gc.collect()
    gc.disable()
    try:
        for index, (_, kind, args) in enumerate(events):
            if kind == 0:
                emitted += len(computer.on_label(*args))  # type: ignore[arg-type]
            else:
                emitted += len(computer.on_transaction(*args))  # type: ignore[arg-type]
            if index % 500 == 0:
                computer.evict()
        computer.evict()
        restore(StreamingFeatureComputer(BASELINE, allowed_lateness=timedelta(seconds=300)),
                snapshot(computer))  # checkpoints run in the worker's process too
        cyclic = gc.collect()
    finally:
        gc.enable()
    assert emitted >= 4000  # every transaction emitted its vector (plus revisions)
    assert cyclic == 0, f"{cyclic} objects were only reachable through reference cycles"
