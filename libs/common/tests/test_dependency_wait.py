"""rtml_common.dependency without a broker: what counts as an outage, the capped backoff,
the end of an outage and a stop during the wait."""

from __future__ import annotations

import threading

import pytest
import redis

from rtml_common.dependency import (
    DependencyUnavailable,
    DependencyWait,
    StoppedWaiting,
    is_outage,
)


class RecordingStop(threading.Event):
    """A stop event whose waits return at once, recording the delays asked for."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.delays: list[float] = []
        self.stop_after = stop_after

    def wait(self, timeout: float | None = None) -> bool:
        self.delays.append(timeout or 0.0)
        if self.stop_after is not None and len(self.delays) >= self.stop_after:
            self.set()
        return self.is_set()


@pytest.mark.parametrize("error", [
    ConnectionRefusedError(111, "Connection refused"), ConnectionResetError(), BrokenPipeError(),
    TimeoutError("timed out"), redis.ConnectionError("Error 111 connecting"),
    redis.TimeoutError("Timeout reading from socket"), redis.BusyLoadingError("loading"),
    DependencyUnavailable("decision log"),
])
def test_connection_and_timeout_errors_are_outages(error: BaseException) -> None:
    assert is_outage(error)


@pytest.mark.parametrize("error", [
    ValueError("bad record"), KeyError("customer_id"), redis.ResponseError("WRONGTYPE"),
    RuntimeError("feature store rejected transaction 13"), OSError(28, "No space left"),
])
def test_errors_about_the_input_or_the_data_are_not(error: BaseException) -> None:
    assert not is_outage(error)


def test_call_waits_with_capped_exponential_backoff_then_returns() -> None:
    stop = RecordingStop()
    wait = DependencyWait("test", stop, first_backoff_s=0.1, max_backoff_s=0.5)
    failures = [redis.ConnectionError("refused")] * 5 + [TimeoutError("slow")] * 2

    def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "written"

    assert wait.call(flaky) == "written"
    assert stop.delays == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5, 0.5]
    assert (wait.outages, wait.total_attempts, wait.waiting) == (1, 7, False)

    # The next outage starts from the first delay again.
    failures.append(DependencyUnavailable("again"))
    assert wait.call(flaky) == "written"
    assert stop.delays[-1] == 0.1
    assert (wait.outages, wait.total_attempts) == (2, 8)


def test_other_errors_propagate_at_once() -> None:
    stop = RecordingStop()
    wait = DependencyWait("test", stop, first_backoff_s=0.1, max_backoff_s=0.5)

    def refused() -> None:
        raise ValueError("not a transaction")

    with pytest.raises(ValueError, match="not a transaction"):
        wait.call(refused)
    assert stop.delays == [] and wait.total_attempts == 0


def test_a_stop_during_the_wait_raises_stopped_waiting() -> None:
    stop = RecordingStop(stop_after=3)
    wait = DependencyWait("test", stop, first_backoff_s=0.1, max_backoff_s=5.0)
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise redis.ConnectionError("refused")

    with pytest.raises(StoppedWaiting):
        wait.call(down)
    assert len(calls) == 3  # no attempt after the stop
    assert not wait.waiting and wait.outages == 0  # stopped, not recovered
    # A BaseException: an `except Exception` between the wait and the loop lets it through.
    assert not issubclass(StoppedWaiting, Exception)
