"""A fingerprint of the exact data a model was trained on.

A registered model carries the SHA-256 of its training frame, so anyone can
tell whether two models saw the same data, and a retrain on unchanged data is
recognisable. The hash covers what the model learns from: the transaction
ids, the feature columns (in the feature set's order) and the label. It is
independent of row order and of the id type: ids are taken as their decimal
strings (as on the wire) and rows sorted by them; features are hashed as
little-endian float64 and the label as one byte per row, each column prefixed
by its name, so renaming or reordering features changes the fingerprint.
Row count and event-time range are reported beside the hash (not in it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

FORMAT = "rtml-fp-v1"


@dataclass(frozen=True)
class Fingerprint:
    """SHA-256 of the canonical training frame, with its size and time range."""

    sha256: str
    n_rows: int
    time_start: str
    time_end: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def fingerprint(frame: pd.DataFrame, feature_names: Sequence[str], label: str = "is_fraud",
                id_column: str = "transaction_id", time_column: str = "event_time",
                ) -> Fingerprint:
    """The fingerprint of ``frame``'s ids, ``feature_names`` columns and ``label``."""
    ids = frame[id_column].astype("int64").astype(str) if pd.api.types.is_integer_dtype(
        frame[id_column]) else frame[id_column].astype(str)
    ids_array = ids.to_numpy(dtype=object)
    order = np.argsort(ids_array, kind="stable")
    digest = hashlib.sha256(FORMAT.encode())
    digest.update(f"rows={len(frame)}\n".encode())
    digest.update(b"ids\n" + "\n".join(ids_array[order].tolist()).encode() + b"\n")
    for name in feature_names:
        values = np.ascontiguousarray(frame[name].to_numpy(dtype=np.float64)[order], dtype="<f8")
        digest.update(f"feature {name}\n".encode() + values.tobytes())
    labels = frame[label].to_numpy(dtype=np.int8)[order]
    digest.update(f"label {label}\n".encode() + np.ascontiguousarray(labels).tobytes())
    if time_column in frame.columns and len(frame):
        times = frame[time_column]
        start, end = times.min().isoformat(), times.max().isoformat()
    else:
        start = end = ""
    return Fingerprint(sha256=digest.hexdigest(), n_rows=len(frame),
                       time_start=start, time_end=end)
