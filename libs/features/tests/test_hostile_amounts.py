"""Issue #17, finding 3: no amount can make a window sum, a vector or a batch feature non-finite.

Pure logic, no servers. The streaming computer refuses an amount outside
``[0, MAX_AMOUNT]`` before changing anything; the batch engine refuses frames
holding one; amounts *at* the maximum, as many as a window can hold, still give
finite features, identical in both engines.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import orjson
import pandas as pd
import pytest

from rtml_common.events import MAX_AMOUNT
from rtml_features.baseline import BASELINE
from rtml_features.batch import SpineError, compute_features
from rtml_features.rows import epoch_ms
from rtml_features.stream import InvalidAmount, StreamingFeatureComputer, restore, snapshot

T0 = pd.Timestamp("2018-04-01", tz="UTC")
HOSTILE = [1e308, math.inf, -math.inf, math.nan, -1.0, math.nextafter(MAX_AMOUNT, math.inf),
           -0.0 - 1e-300]


@pytest.mark.parametrize("amount", HOSTILE)
def test_the_computer_refuses_an_amount_before_touching_state(amount: float) -> None:
    computer = StreamingFeatureComputer(BASELINE, allowed_lateness=timedelta(minutes=5),
                                        track_newest=True)
    t0 = epoch_ms(T0)
    computer.on_transaction("ok", "c1", "t1", t0, 10.0, "p0")
    states = {key: (list(s.tids), list(s.amounts)) for key, s in computer.states.items()}
    watermark, newest = computer.watermark_ms, computer.max_time_ms
    with pytest.raises(InvalidAmount, match=r"transaction bad: amount .* is not a finite number"):
        computer.on_transaction("bad", "c1", "t1", t0 + 1000, amount, "p0")
    assert {key: (list(s.tids), list(s.amounts))
            for key, s in computer.states.items()} == states
    assert (computer.watermark_ms, computer.max_time_ms) == (watermark, newest)
    assert "bad" not in computer.recent
    (after,) = computer.on_transaction("ok-2", "c1", "t1", t0 + 2000, 30.0, "p0")
    assert after.vector["customer_id_avg_amount_1day_window"] == 20.0


def test_a_full_window_of_maximum_amounts_stays_finite_in_both_engines() -> None:
    """Ten thousand payments of MAX_AMOUNT within a day: the sum (1e13 by default) is
    finite and exact, and the batch engine agrees with the stream."""
    n = 10_000
    seconds = np.arange(n) * 8  # within 1 day
    history = pd.DataFrame({
        "transaction_id": [f"m{i}" for i in range(n)],
        "event_time": T0 + pd.to_timedelta(seconds, unit="s"),
        "customer_id": "c-max", "terminal_id": "t-max", "amount": MAX_AMOUNT,
    })
    computer = StreamingFeatureComputer(BASELINE)
    last = None
    for i in range(n):
        (last, *_) = computer.on_transaction(f"m{i}", "c-max", "t-max",
                                             epoch_ms(T0) + int(seconds[i]) * 1000, MAX_AMOUNT)
    assert last is not None
    assert all(math.isfinite(value) for value in last.vector.values())
    assert last.vector["customer_id_avg_amount_1day_window"] == MAX_AMOUNT
    assert last.vector["customer_id_nb_tx_1day_window"] == n
    batch = compute_features(BASELINE, history, history)
    assert np.isfinite(batch[BASELINE.names].to_numpy()).all()
    row = batch.iloc[-1]
    for name in BASELINE.names:
        assert row[name] == pytest.approx(last.vector[name], rel=1e-12, abs=1e-12), name


@pytest.mark.parametrize("amount", HOSTILE)
@pytest.mark.parametrize("frame", ["history", "spine"])
def test_the_batch_engine_refuses_frames_with_an_amount_outside_the_bound(
        amount: float, frame: str) -> None:
    history = pd.DataFrame({
        "transaction_id": ["a", "b", "c"], "event_time": [T0, T0, T0],
        "customer_id": ["c1", "c1", "c1"], "terminal_id": ["t1", "t1", "t1"],
        "amount": [1.0, 2.0, 3.0],
    })
    bad = history.assign(amount=[1.0, amount, 3.0])
    spine, source = (history, bad) if frame == "history" else (bad, history)
    with pytest.raises(SpineError, match=rf"{frame}: 1 amount\(s\) not a finite number .* "
                                         r"at row 1"):
        compute_features(BASELINE, spine, source)


def test_the_batch_engine_accepts_the_maximum_and_refuses_a_non_numeric_column() -> None:
    history = pd.DataFrame({
        "transaction_id": ["a"], "event_time": [T0], "customer_id": ["c1"],
        "terminal_id": ["t1"], "amount": [MAX_AMOUNT],
    })
    assert compute_features(BASELINE, history, history)["tx_amount"].tolist() == [MAX_AMOUNT]
    with pytest.raises(SpineError, match="amount column is not numeric"):
        compute_features(BASELINE, history.assign(amount=["12.5x"]), history)


def test_a_checkpoint_saved_before_the_bound_is_restored_without_its_poison(
        caplog: pytest.LogCaptureFixture) -> None:
    """A checkpoint from before this release may hold a 1e308 payment (and vectors whose
    inf its JSON wrote as null): restored, they are dropped and the customer heals."""
    t0 = epoch_ms(T0)
    computer = StreamingFeatureComputer(BASELINE, allowed_lateness=timedelta(minutes=5))
    computer.on_transaction("a", "c1", "t1", t0, 10.0, "p0")
    computer.on_transaction("b", "c1", "t1", t0 + 1000, 30.0, "p0")
    data = orjson.loads(orjson.dumps(snapshot(computer)))
    for state in data["states"]:  # as the unbounded pipeline saved it
        _, _, times, tids, amounts, fraud_known_at, _ = state
        times.append(t0 + 2000)
        tids.append("huge")
        amounts.append(1e308)
        fraud_known_at.append(fraud_known_at[-1])
    poisoned = [*data["recent"][-1]]
    poisoned[0], poisoned[4] = "huge", 1e308
    poisoned[6] = [None if isinstance(v, float) else v for v in poisoned[6]]
    data["recent"].append(poisoned)

    restored = StreamingFeatureComputer(BASELINE, allowed_lateness=timedelta(minutes=5))
    with caplog.at_level("WARNING"):
        restore(restored, orjson.loads(orjson.dumps(data)))
    assert "dropped 2 event(s)" in caplog.text and "1 non-finite vector(s)" in caplog.text
    assert restored.states[("customer", "c1")].tids == ["a", "b"]
    assert "huge" not in restored.recent and set(restored.recent) == {"a", "b"}
    (after, *_) = restored.on_transaction("c", "c1", "t1", t0 + 3000, 50.0, "p0")
    assert after.vector["customer_id_avg_amount_1day_window"] == 30.0
    assert all(math.isfinite(v) for v in after.vector.values())
