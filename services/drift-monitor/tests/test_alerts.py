"""Alert rules: hysteresis raise/clear, per-subject thresholds, deterministic ids, cooldown."""

from __future__ import annotations

import pytest

from rtml_drift_monitor.alerts import (
    Hysteresis,
    HysteresisRule,
    RetrainPlanner,
    Thresholds,
    Transition,
    alert_id,
    request_id,
)
from rtml_drift_monitor.windows import Window, WindowKind

DAY = 86_400_000


def feed(state: Hysteresis, values: list[float], threshold: float = 0.2) -> list[str]:
    return [state.update(v, threshold).value for v in values]


def test_default_rule_raises_on_the_first_window_over_the_threshold() -> None:
    state = Hysteresis(HysteresisRule())
    assert feed(state, [0.05, 0.21]) == ["none", "raised"]
    assert state.raised


def test_raise_after_needs_consecutive_windows_over() -> None:
    state = Hysteresis(HysteresisRule(raise_after=3))
    assert feed(state, [0.3, 0.3, 0.1, 0.3, 0.3, 0.3]) == [
        "none", "none", "none", "none", "none", "raised"]


def test_clear_needs_consecutive_windows_under_the_lower_threshold() -> None:
    state = Hysteresis(HysteresisRule(raise_after=1, clear_after=2, clear_ratio=0.5))
    # 0.15 is under the raise threshold but above the clear one (0.1): the alert stays.
    assert feed(state, [0.5, 0.15, 0.15, 0.05, 0.15, 0.05, 0.05]) == [
        "raised", "none", "none", "none", "none", "none", "cleared"]
    assert not state.raised
    assert feed(state, [0.3]) == ["raised"]  # cleared: the subject can alert again


def test_a_raised_alert_does_not_repeat_while_drift_continues() -> None:
    state = Hysteresis(HysteresisRule())
    assert feed(state, [0.9, 0.9, 0.9]) == ["raised", "none", "none"]
    assert Transition.RAISED.value == "raised"


def test_thresholds_tumbling_override_then_subject_then_default() -> None:
    table = Thresholds(0.2, {"score": 0.1, "muted": None}, {"tx_during_weekend": None,
                                                           "score": 0.3})
    assert table.for_subject(WindowKind.TUMBLING, "tx_during_weekend") is None
    assert table.for_subject(WindowKind.SLIDING, "tx_during_weekend") == 0.2
    assert table.for_subject(WindowKind.TUMBLING, "score") == 0.3
    assert table.for_subject(WindowKind.SLIDING, "score") == 0.1
    assert table.for_subject(WindowKind.SLIDING, "muted") is None
    assert table.for_subject(WindowKind.TUMBLING, "tx_amount") == 0.2


def test_alert_ids_are_deterministic_and_differ_by_what_they_are_about() -> None:
    window = Window(WindowKind.TUMBLING, 10 * DAY, 11 * DAY)
    same = alert_id("m", "3", Window(WindowKind.TUMBLING, 10 * DAY, 11 * DAY), "tx_amount")
    assert alert_id("m", "3", window, "tx_amount") == same
    others = {
        alert_id("m", "4", window, "tx_amount"),
        alert_id("m", "3", window, "score"),
        alert_id("m", "3", Window(WindowKind.SLIDING, 10 * DAY, 11 * DAY), "tx_amount"),
        alert_id("m", "3", Window(WindowKind.TUMBLING, 11 * DAY, 12 * DAY), "tx_amount"),
        alert_id("other", "3", window, "tx_amount"),
    }
    assert same not in others and len(others) == 5
    assert request_id("m", "3", DAY) == request_id("m", "3", DAY) != request_id("m", "3", 2 * DAY)


def test_retrain_cooldown_is_measured_in_event_time() -> None:
    planner = RetrainPlanner(enabled=True, cooldown_ms=2 * DAY, lookback_ms=21 * DAY)
    assert [planner.due(end * DAY) for end in (10, 11, 12, 13, 14)] == [
        True, False, True, False, True]


def test_retrain_policy_never_requests_nothing() -> None:
    planner = RetrainPlanner(enabled=False, cooldown_ms=0, lookback_ms=DAY)
    assert not planner.due(DAY)


@pytest.mark.parametrize("kwargs", [{"raise_after": 0}, {"clear_after": 0}, {"clear_ratio": 0},
                                    {"clear_ratio": 1.5}])
def test_invalid_rules_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        HysteresisRule(**kwargs)
