"""The request book: durable, deduplicated by id, other models ignored, bounded history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from rtml_common.events import RetrainRequest
from rtml_retrain_worker.requests import Outcome, RequestBook, Status

DATA_END = datetime(2018, 6, 1, 5, tzinfo=UTC)


def request(request_id: str, model: str = "fraud-detector") -> RetrainRequest:
    """As the drift monitor sends it: its alerting window's end and a 21-day lookback."""
    return RetrainRequest(request_id=request_id, model_name=model, reason="drift on tx_amount",
                          alert_ids=[f"alert-{request_id}"],
                          data_start=DATA_END - timedelta(days=21), data_end=DATA_END,
                          requested_at=datetime(2024, 1, 1, tzinfo=UTC))


def test_requests_are_durable_and_deduplicated_across_restarts(tmp_path: Path) -> None:
    book = RequestBook.open(tmp_path, "fraud-detector")
    outcomes = book.record([request("r1"), request("r2"), request("r1"),
                            request("x", model="other")])
    assert [o for _, o in outcomes] == [Outcome.NEW, Outcome.NEW, Outcome.DUPLICATE,
                                        Outcome.IGNORED]
    assert [e.request.request_id for e in book.pending()] == ["r1", "r2"]

    # A crash after recording and before the offset commit redelivers r2: recognised.
    reopened = RequestBook.open(tmp_path, "fraud-detector")
    assert [o for _, o in reopened.record([request("r2")])] == [Outcome.DUPLICATE]
    assert [e.request for e in reopened.pending()] == [request("r1"), request("r2")]
    assert reopened.pending()[0].request.data_end == DATA_END  # what the scheduler reads
    ignored = reopened.get("x")
    assert ignored is not None and ignored.status is Status.IGNORED

    reopened.finish(["r1", "r2"], Status.DONE, "version 3 is the challenger", "3")
    again = RequestBook.open(tmp_path, "fraud-detector")
    assert again.pending() == []
    entry = again.get("r1")
    assert entry is not None and entry.version == "3" and entry.status is Status.DONE
    assert [o for _, o in again.record([request("r1")])] == [Outcome.DUPLICATE]


def test_failed_attempts_are_counted_and_old_finished_entries_dropped(tmp_path: Path) -> None:
    book = RequestBook.open(tmp_path, "fraud-detector", keep_finished=2)
    book.record([request(f"r{i}") for i in range(4)])
    assert book.note_failure(["r0"], "MLflow down") == 1
    assert book.note_failure(["r0", "r1"], "MLflow down") == 2
    retried = RequestBook.open(tmp_path, "fraud-detector").get("r0")
    assert retried is not None and retried.attempts == 2
    for i in range(3):
        book.finish([f"r{i}"], Status.FAILED, "no split")
    ids = {e.request.request_id for e in RequestBook.open(tmp_path, "fraud-detector").entries()}
    assert ids == {"r1", "r2", "r3"}  # r0, the oldest finished, is forgotten
