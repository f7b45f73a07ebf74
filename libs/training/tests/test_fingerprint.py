"""The training-data fingerprint: stable for the same data, different for any change."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rtml_training.fingerprint import fingerprint

NAMES = ["f1", "f2"]


def frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 200
    return pd.DataFrame({
        "transaction_id": np.arange(n, dtype=np.int64) + 1_000,
        "event_time": pd.date_range("2018-07-25", periods=n, freq="min", tz="UTC"),
        "f1": rng.random(n), "f2": rng.integers(0, 5, n).astype(float),
        "is_fraud": rng.random(n) < 0.1,
    })


def test_same_data_same_fingerprint_whatever_the_row_order_or_id_type() -> None:
    data = frame()
    reference = fingerprint(data, NAMES)
    assert fingerprint(data.copy(), NAMES) == reference
    assert fingerprint(data.sample(frac=1.0, random_state=3), NAMES).sha256 == reference.sha256
    as_strings = data.assign(transaction_id=data["transaction_id"].astype(str))
    assert fingerprint(as_strings, NAMES).sha256 == reference.sha256
    assert reference.n_rows == 200 and reference.time_start.startswith("2018-07-25T00:00")
    assert len(reference.sha256) == 64


def test_any_change_changes_the_fingerprint() -> None:
    data = frame()
    reference = fingerprint(data, NAMES).sha256
    changed = data.copy()
    changed.loc[17, "f1"] += 1e-9
    assert fingerprint(changed, NAMES).sha256 != reference
    flipped = data.copy()
    flipped.loc[3, "is_fraud"] = not flipped.loc[3, "is_fraud"]
    assert fingerprint(flipped, NAMES).sha256 != reference
    renumbered = data.assign(transaction_id=data["transaction_id"] + 1)
    assert fingerprint(renumbered, NAMES).sha256 != reference
    assert fingerprint(data, list(reversed(NAMES))).sha256 != reference
    assert fingerprint(data.iloc[1:], NAMES).sha256 != reference
