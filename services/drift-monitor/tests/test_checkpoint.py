"""Checkpoints: a detector restored from a JSON checkpoint continues exactly like one never stopped.

The crash-recovery contract (``rtml_drift_monitor.checkpoint``): state after
the records before the checkpoint + the records after it, replayed = the
uninterrupted state. Checked here without servers: the same events fed to
one detector straight through, and to another stopped half-way, written to
a checkpoint file, read back into a fresh detector and fed the rest. Their
evaluations (windows, counts, PSI), alerts, retrain requests and final
state must be identical; a fresh detector without the checkpoint closes the
open windows as partial (what a restart did before checkpoints).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rtml_drift_monitor.checkpoint import CheckpointFile, MonitorCheckpoint
from rtml_drift_monitor.config import Settings
from rtml_drift_monitor.detector import DriftDetector, Outcome
from rtml_drift_monitor.monitor import build_detector, retrain_planner
from rtml_drift_monitor.reference import ChampionReference
from rtml_features.baseline import BASELINE
from rtml_monitoring.reference import build_reference

NAMES = BASELINE.names
HOUR_MS = 3_600_000
T0_MS = 1_527_811_200_000  # 2018-06-01T00:00Z
SOURCES = [("features", p) for p in range(2)]


def frame(rows: int, seed: int, amount_scale: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {name: rng.gamma(2.0, 20.0, rows) for name in NAMES}
    data["tx_amount"] = rng.gamma(2.0, 25.0, rows) * amount_scale
    return pd.DataFrame(data)


def champion() -> ChampionReference:
    reference = build_reference(frame(5000, 1), NAMES, np.random.default_rng(2).beta(2, 8, 5000),
                                feature_set=BASELINE.name, feature_set_version=BASELINE.version)
    return ChampionReference("fraud", "3", "run", reference)


def batches() -> list[tuple[Any, Any, Any, Any, Any]]:
    """Eight hours of features and scores, hours 3-5 drifting; 50 batches per hour."""
    out = []
    for hour in range(8):
        drift = 3.0 if 3 <= hour <= 5 else 1.0
        values = frame(400, 100 + hour, drift)[list(NAMES)].to_numpy(np.float64)
        scores = np.clip(np.random.default_rng(200 + hour).beta(2, 8, 400)
                         + (0.3 if drift > 1 else 0.0), 0, 1)
        times = T0_MS + hour * HOUR_MS + np.arange(400) * (HOUR_MS // 400)
        for chunk in np.array_split(np.arange(400), 50):
            sources = [SOURCES[i % 2] for i in chunk]
            out.append((times[chunk], values[chunk], scores[chunk], sources, SOURCES))
    return out


def feed(detector: DriftDetector, part: list[tuple[Any, ...]]) -> list[Any]:
    seen: list[Any] = []
    for times, values, scores, sources, active in part:
        outcome = Outcome()
        outcome.extend(detector.observe_features(times, values, sources, active))
        outcome.extend(detector.observe_scores(times, scores, sources, active))
        seen += [(e.window, e.events, e.skip, {k: round(m.psi, 12) for k, m in e.measures.items()})
                 for e in outcome.evaluations]
        seen += [a.alert_id for a in outcome.alerts]
        seen += [(r.request_id, r.alert_ids) for r in outcome.retrain_requests]
    return seen


def settings() -> Settings:
    return Settings(model_name="fraud", window_s=3600, sliding_window_s=3 * 3600,
                    allowed_lateness_s=0, min_window_events=100)


def test_a_restored_checkpoint_continues_like_the_uninterrupted_detector(tmp_path: Path) -> None:
    config, reference, events = settings(), champion(), batches()
    straight = build_detector(config, reference, retrain_planner(config))
    expected = feed(straight, events)
    assert any(isinstance(x, str) for x in expected), "the drift must raise alerts"

    half = len(events) * 9 // 16  # inside hour 4: a drifting window and sliding ones open
    first = build_detector(config, reference, retrain_planner(config))
    before = feed(first, events[:half])
    file = CheckpointFile(tmp_path / "checkpoint.json")
    file.save(MonitorCheckpoint("fraud", first.snapshot(), first.planner.last_request_end_ms,
                                {("features", 0): 123}, {("drift-alerts", 0): 7}))

    saved = file.load()
    assert saved is not None and saved.offsets == {("features", 0): 123}
    assert saved.outputs == {("drift-alerts", 0): 7} and saved.model_version == "3"
    planner = retrain_planner(config)
    planner.last_request_end_ms = saved.last_request_end_ms
    restored = build_detector(config, reference, planner)
    restored.restore(saved.detector)  # type: ignore[arg-type]
    assert before + feed(restored, events[half:]) == expected
    assert restored.snapshot() == straight.snapshot()

    # Without it, the windows open at the stop are closed partial: evaluations are lost.
    fresh = build_detector(config, reference, retrain_planner(config))
    assert before + feed(fresh, events[half:]) != expected


def test_a_checkpoint_of_another_version_or_reference_is_refused(tmp_path: Path) -> None:
    config, reference = settings(), champion()
    detector = build_detector(config, reference, retrain_planner(config))
    feed(detector, batches()[:60])
    state = detector.snapshot()
    other = build_detector(config, ChampionReference("fraud", "4", "run", reference.reference),
                           retrain_planner(config))
    try:
        other.restore(state)
    except ValueError as error:
        assert "v3" in str(error)
    else:
        raise AssertionError("a checkpoint of v3 was restored into v4")
    state["features"]["width"] += 1  # other bins
    try:
        build_detector(config, reference, retrain_planner(config)).restore(state)
    except ValueError as error:
        assert "bins" in str(error)
    else:
        raise AssertionError("a checkpoint with other bins was restored")


def test_an_unreadable_checkpoint_is_ignored_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    path.write_bytes(b'{"format": 1, "model_name": ')  # torn by hand (writes are atomic)
    assert CheckpointFile(path).load() is None
    assert CheckpointFile(tmp_path / "missing.json").load() is None
