"""The scheduler: a request waits for days after its drift, a burst trains once, refusals final.

The training itself is replaced by a recorder here (pure scheduling logic);
the real pipeline, registry and broker run in test_integration.py.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from rtml_common.config import MlflowSettings
from rtml_common.events import Label, RetrainRequest
from rtml_common.kafka.consumer import Record
from rtml_retrain_worker import service
from rtml_retrain_worker.challenger import AliasResult, RegistryClient
from rtml_retrain_worker.config import Settings
from rtml_retrain_worker.plan import Ready, Wait
from rtml_retrain_worker.requests import Status
from rtml_retrain_worker.retrain import TrainingJob

pytestmark = pytest.mark.usefixtures("clean_environment")

T0 = datetime(2018, 6, 1, tzinfo=UTC)
LOOKBACK = timedelta(days=21)


def request_record(request_id: str, data_end: datetime | None = None,
                   offset: int = 0) -> Record[Any]:
    """A request as the drift monitor sends it: data_start is data_end - a 21-day lookback."""
    value = RetrainRequest(request_id=request_id, model_name="fraud-detector", reason="drift",
                           alert_ids=[f"alert-{request_id}"],
                           data_start=data_end - LOOKBACK if data_end else None,
                           data_end=data_end, requested_at=T0)
    return Record("retrain-requests", 0, offset, b"fraud-detector", value, (), 0)


def label_record(i: int, labeled_at: datetime) -> Record[Any]:
    value = Label(transaction_id=str(i), customer_id="c1", transaction_time=T0,
                  labeled_at=labeled_at, is_fraud=False)
    return Record("labels", 0, i, b"c1", value, (), 0)


class FakeTraining:
    """Stands in for :func:`rtml_retrain_worker.retrain.retrain`; records each job."""

    def __init__(self, alias: AliasResult | None = None, error: Exception | None = None,
                 release: threading.Event | None = None) -> None:
        self.jobs: list[TrainingJob] = []
        self.alias = alias or AliasResult(True, 200, "challenger -> version 4")
        self.error = error
        #: When set, a training runs until this event is set (to act during a training).
        self.release = release
        self.started = threading.Event()

    def __call__(self, job: TrainingJob, archive: Any, registry: Any) -> Any:
        self.jobs.append(job)
        self.started.set()
        if self.release is not None:
            assert self.release.wait(30), "the test never released the training"
        if self.error is not None:
            raise self.error
        metrics = SimpleNamespace(auc=0.9, ap=0.6, k=100, cp_at_k=0.3)
        # Each training registers the next version: 4, 5, ...
        return SimpleNamespace(result=SimpleNamespace(metrics=metrics),
                               version=str(3 + len(self.jobs)), alias=self.alias)


def make_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeTraining,
                **overrides: Any) -> service.RetrainWorker:
    monkeypatch.setattr(service, "retrain", fake)
    settings = Settings(archive_dir=tmp_path, **overrides)
    return service.RetrainWorker(settings, MlflowSettings(),
                                 RegistryClient("http://127.0.0.1:9", None))


def test_request_stays_pending_until_labels_mature_then_a_burst_trains_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTraining()
    worker = make_worker(tmp_path, monkeypatch, fake)  # 14 / 0 / 7 days, 7 d mature, 3 d
    # Drift alerts on June 1 and June 2 (window ends 05:00); r1 is delivered twice.
    first, second = T0 + timedelta(hours=5), T0 + timedelta(days=1, hours=5)
    worker.handle([request_record("r1", first), request_record("r2", second, offset=1),
                   request_record("r1", first, offset=2)])
    assert isinstance(worker.schedule(), Wait)  # no labels archived at all

    # r1 needs June 2, 3, 4 trained on (train_end June 5), then 7 test days, 7 d maturity:
    # label time June 19. One minute short of it, the burst waits.
    needed = T0 + timedelta(days=18)
    worker.handle([label_record(1, needed - timedelta(minutes=1))])
    worker.archive.flush()
    decision = worker.schedule()
    assert isinstance(decision, Wait) and decision.until == needed
    assert "label time 2018-06-19 00:00 needed" in decision.reason
    assert fake.jobs == []

    # A restart while waiting keeps both requests pending (and still deduplicated).
    fake_after = FakeTraining()
    worker = make_worker(tmp_path, monkeypatch, fake_after)
    worker.handle([request_record("r2", second, offset=1)])
    assert [e.request.request_id for e in worker.book.pending()] == ["r1", "r2"]

    # At June 19 the earliest request (r1) is served: the burst trains, although r2 alone
    # would wait one more day.
    worker.handle([label_record(2, needed)])
    worker.archive.flush()
    ready = worker.schedule()
    assert isinstance(ready, Ready) and ready.split.train_end == date(2018, 6, 5)
    assert worker.wait_for_training(30)
    assert worker.schedule() is None  # nothing pending any more
    assert [job.request_ids for job in fake_after.jobs] == [["r1", "r2"]]
    assert fake_after.jobs[0].alert_ids == ["alert-r1", "alert-r2"]
    for request_id in ("r1", "r2"):  # one training answers the whole burst
        entry = worker.book.get(request_id)
        assert entry is not None and entry.status is Status.DONE and entry.version == "4"


def test_a_request_arriving_during_or_after_a_training_is_a_new_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    fake = FakeTraining(release=release)
    worker = make_worker(tmp_path, monkeypatch, fake)
    worker.handle([request_record("r1", T0 + timedelta(hours=5)),
                   label_record(1, T0 + timedelta(days=18))])
    worker.archive.flush()
    assert isinstance(worker.schedule(), Ready)
    assert fake.started.wait(30)

    # The drift goes on: the monitor asks again while r1 trains (window June 2).
    worker.handle([request_record("r2", T0 + timedelta(days=1, hours=5), offset=1)])
    assert worker.schedule() is None  # one training at a time
    release.set()
    assert worker.wait_for_training(30)
    done = worker.book.get("r1")
    assert done is not None and done.status is Status.DONE and done.version == "4"
    # r2 was not part of that training: it is pending, with its own need (label June 20).
    assert [e.request.request_id for e in worker.book.pending()] == ["r2"]
    waiting = worker.schedule()
    assert isinstance(waiting, Wait) and waiting.until == T0 + timedelta(days=19)

    # One more after the training (window June 3): it joins r2's burst, r2 decides.
    worker.handle([request_record("r3", T0 + timedelta(days=2, hours=5), offset=2),
                   label_record(2, T0 + timedelta(days=19))])
    worker.archive.flush()
    ready = worker.schedule()
    assert isinstance(ready, Ready) and ready.split.train_end == date(2018, 6, 6)
    assert worker.wait_for_training(30)
    assert [job.request_ids for job in fake.jobs] == [["r1"], ["r2", "r3"]]
    assert {rid: (e.status, e.version) for rid in ("r1", "r2", "r3")
            if (e := worker.book.get(rid)) is not None} == {
        "r1": (Status.DONE, "4"), "r2": (Status.DONE, "5"), "r3": (Status.DONE, "5")}
    assert worker.schedule() is None


def test_gate_refusal_marks_the_requests_failed_with_the_registry_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refusal = AliasResult(False, 422, "latency: p99 31 ms > 20 ms budget", refused=True,
                          reason="latency")
    fake = FakeTraining(alias=refusal)
    worker = make_worker(tmp_path, monkeypatch, fake)
    worker.handle([request_record("r1"), label_record(1, T0 + timedelta(days=30))])
    worker.archive.flush()
    assert isinstance(worker.schedule(), Ready)
    assert worker.wait_for_training(30)
    entry = worker.book.get("r1")
    assert entry is not None and entry.status is Status.FAILED and entry.version == "4"
    assert "p99 31 ms" in entry.detail
    assert worker.schedule() is None and len(fake.jobs) == 1  # not retried


def test_unexpected_errors_are_retried_a_bounded_number_of_times(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTraining(error=RuntimeError("MLflow unreachable"))
    worker = make_worker(tmp_path, monkeypatch, fake, training_attempts=2,
                         check_interval_s=0.01)
    worker.handle([request_record("r1"), label_record(1, T0 + timedelta(days=30))])
    worker.archive.flush()
    for _ in range(200):
        worker.schedule()
        worker.wait_for_training(30)
        entry = worker.book.get("r1")
        if entry is not None and entry.status is not Status.PENDING:
            break
        worker._retry_at = 0.0  # skip the back-off instead of sleeping through it
    assert entry is not None and entry.status is Status.FAILED and entry.attempts == 2
    assert len(fake.jobs) == 2


def test_data_errors_fail_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTraining(error=ValueError("no transactions in the training period"))
    worker = make_worker(tmp_path, monkeypatch, fake)
    worker.handle([request_record("r1"), label_record(1, T0 + timedelta(days=30))])
    worker.archive.flush()
    worker.schedule()
    worker.wait_for_training(30)
    entry = worker.book.get("r1")
    assert entry is not None and entry.status is Status.FAILED
    assert "no transactions" in entry.detail and len(fake.jobs) == 1


# --- the registry client (HTTP faked at the transport; the real service runs in
# --- test_integration.py) ---------------------------------------------------------


def registry_with(handler: Any, **kwargs: Any) -> RegistryClient:
    return RegistryClient("http://registry", SecretStr("k" * 20), sleep=lambda _s: None,
                          transport=httpx.MockTransport(handler), **kwargs)


def test_alias_refusal_is_final_and_carries_the_failed_checks() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if request.method == "GET":
            return httpx.Response(200, json={"model": "m", "aliases": {"champion": "1"}})
        assert request.headers["X-API-Key"] == "k" * 20
        return httpx.Response(422, json={"detail": "gate refused: latency p99 31 ms",
                                         "failed_checks": ["latency"]})

    result = registry_with(handler).set_alias("m", "2", "why", "rtml-retrain-worker")
    assert (result.ok, result.refused, result.status, result.reason) == (False, True, 422,
                                                                         "latency")
    assert "p99 31 ms" in result.detail and calls == ["GET", "PUT"]


def test_alias_server_errors_are_retried_and_an_alias_already_set_is_done() -> None:
    state = {"puts": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            aliases = {"challenger": "2"} if state["puts"] >= 2 else {}
            return httpx.Response(200, json={"model": "m", "aliases": aliases})
        state["puts"] += 1
        return httpx.Response(502, json={"detail": "MLflow failed"})

    # Second PUT "failed" but had in fact set the alias: the next try sees it and stops.
    result = registry_with(handler, attempts=5).set_alias("m", "2", "why", "actor")
    assert result.ok and state["puts"] == 2

    always_down = registry_with(lambda r: httpx.Response(503 if r.method == "PUT" else 500),
                                attempts=3)
    down = always_down.set_alias("m", "2", "why", "actor")
    assert not down.ok and not down.refused and down.status == 500
