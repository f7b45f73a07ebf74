"""The retrain split: anchored on mature labels, waiting until days after data_end are covered."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from rtml_common.events import RetrainRequest
from rtml_retrain_worker.plan import (
    Ready,
    SplitPolicy,
    Wait,
    day_after,
    decide,
    label_time_needed,
    required_train_end,
    split_at,
)

POLICY = SplitPolicy(train_days=14, gap_days=0, test_days=7, label_maturity=timedelta(days=7),
                     min_days_after_drift=3)


def request(request_id: str = "r1", data_start: datetime | None = None,
            data_end: datetime | None = None) -> RetrainRequest:
    return RetrainRequest(request_id=request_id, model_name="fraud-detector", reason="drift",
                          alert_ids=["a1"], data_start=data_start, data_end=data_end,
                          requested_at=datetime(2024, 1, 1, tzinfo=UTC))


LOOKBACK = timedelta(days=21)


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2018, 6, day, hour, tzinfo=UTC)


def test_split_tests_on_the_newest_mature_days_and_trains_before_them() -> None:
    split = split_at(at(30, 15), POLICY)
    # Labels known to June 30 15:00, mature after 7 days: transactions before June 23 are final.
    assert split.test_end == date(2018, 6, 23)
    assert split.test_start == date(2018, 6, 16)
    assert (split.train_start, split.train_end) == (date(2018, 6, 2), date(2018, 6, 16))
    gapped = split_at(at(30, 15), SplitPolicy(train_days=14, gap_days=2, test_days=7))
    assert gapped.train_end == date(2018, 6, 14) and gapped.delay_days == 2
    assert gapped.test_start == date(2018, 6, 16)


def drift_request(request_id: str, data_end: datetime) -> RetrainRequest:
    """As the drift monitor sends it: data_start is data_end minus a 21-day lookback."""
    return request(request_id, data_start=data_end - LOOKBACK, data_end=data_end)


def test_a_request_needs_whole_days_after_its_data_end_in_the_training_period() -> None:
    assert required_train_end(request(), POLICY) is None
    # data_start is the training lookback, not when drift began: it changes nothing.
    assert required_train_end(request(data_start=at(10, 5)), POLICY) is None
    # The window ended June 10 05:00: June 10 is drift, June 11, 12, 13 are the 3 days after.
    assert required_train_end(drift_request("r1", at(10, 5)), POLICY) == date(2018, 6, 14)
    assert required_train_end(request(data_start=at(1), data_end=at(10, 5)),
                              POLICY) == date(2018, 6, 14)
    # A window ending at midnight leaves June 10 itself as the first day after it.
    assert required_train_end(drift_request("r1", at(10)), POLICY) == date(2018, 6, 13)
    assert day_after(at(14)) == date(2018, 6, 14) and day_after(at(14, 1)) == date(2018, 6, 15)
    no_margin = SplitPolicy(min_days_after_drift=0)
    assert required_train_end(drift_request("r1", at(10, 5)), no_margin) == date(2018, 6, 11)


def test_request_waits_until_the_label_clock_allows_its_split_then_is_ready() -> None:
    drift = drift_request("r1", at(10, 5))
    needed = label_time_needed(date(2018, 6, 14), POLICY)
    # day after data_end (June 11) + 3 days after drift + 7 test days + 7 days to mature.
    assert needed == at(28)

    waiting = decide([drift], needed - timedelta(minutes=1), POLICY)
    assert isinstance(waiting, Wait) and waiting.until == needed
    assert "label time 2018-06-28 00:00 needed" in waiting.reason
    assert "must run to 2018-06-13 (data_end + 3 d)" in waiting.reason

    ready = decide([drift], needed, POLICY)
    assert isinstance(ready, Ready) and ready.as_of == needed
    assert ready.split.train_end == date(2018, 6, 14)
    assert ready.split.train_last_day == at(10).date() + timedelta(days=3)
    assert ready.split.test_start == date(2018, 6, 14)  # gap 0: the test follows at once


def test_the_wait_is_data_end_plus_margin_test_days_and_maturity_for_any_policy() -> None:
    """Ready exactly when the label clock reaches the formula, for many data_ends and policies."""
    policies = [POLICY,
                SplitPolicy(train_days=7, gap_days=2, test_days=3,
                            label_maturity=timedelta(days=1, hours=12), min_days_after_drift=2),
                SplitPolicy(train_days=5, gap_days=0, test_days=1,
                            label_maturity=timedelta(0), min_days_after_drift=0)]
    for policy in policies:
        for hours in range(0, 72, 5):
            data_end = at(10) + timedelta(hours=hours)
            drift = drift_request("r", data_end)
            first_day_after = day_after(data_end)
            # data_end + min_days_after_drift + gap + test_days, to a day boundary, + maturity.
            needed = (datetime.combine(first_day_after, datetime.min.time(), tzinfo=UTC)
                      + timedelta(days=policy.min_days_after_drift + policy.gap_days
                                  + policy.test_days)
                      + policy.label_maturity)
            early = decide([drift], needed - timedelta(seconds=1), policy)
            assert isinstance(early, Wait) and early.until == needed, (policy, data_end)
            for clock in (needed, needed + timedelta(hours=7), needed + timedelta(days=3)):
                ready = decide([drift], clock, policy)
                assert isinstance(ready, Ready), (policy, data_end, clock)
                trained_after = (ready.split.train_end - first_day_after).days
                assert trained_after >= policy.min_days_after_drift
                assert ready.split.train_start < first_day_after  # it saw the old days too
            exact = decide([drift], needed, policy)
            assert isinstance(exact, Ready)
            assert (exact.split.train_end - first_day_after).days == policy.min_days_after_drift


def test_a_burst_trains_once_when_its_earliest_request_is_served() -> None:
    # While drift lasts the monitor keeps asking: one request a day, each window a day later.
    burst = [drift_request(f"r{day}", at(day, 5)) for day in (12, 10, 11)]
    first_served = label_time_needed(date(2018, 6, 14), POLICY)  # r10's, as alone
    assert decide(burst, first_served, POLICY) == decide(burst[1:2], first_served, POLICY)
    waiting = decide(burst, first_served - timedelta(hours=1), POLICY)
    assert isinstance(waiting, Wait) and waiting.until == first_served
    ready = decide(burst, first_served, POLICY)
    assert isinstance(ready, Ready) and ready.split.train_end == date(2018, 6, 14)
    # The newest request alone would still wait two days: the burst does not.
    assert isinstance(decide(burst[:1], first_served, POLICY), Wait)
    # A request without data_end is served by any split, so its burst trains at once.
    with_manual = [*burst, request("manual")]
    assert isinstance(decide(with_manual, at(20), POLICY), Ready)
    assert isinstance(decide(burst, at(20), POLICY), Wait)


def test_nothing_trains_before_any_label_is_archived() -> None:
    decision = decide([request()], None, POLICY)
    assert isinstance(decision, Wait) and "no labels" in decision.reason
