"""The traffic command end to end: a stand-in decision API of the test's own, a real broker.

The stand-in (Starlette on uvicorn, in a thread, on a free port) validates
each body as the project's ``Transaction`` (as the real API does, 422
otherwise), records it with its arrival time, and answers like
``POST /v1/decisions``: a decision for most ids, a 503 for every 7th data
row, so those must get no label. The command runs as the platform starts it
(``python -m rtml_cli.traffic ... --json``), in a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from rtml_common.events import Label, Transaction
from rtml_common.serde import decode
from rtml_localstack.ports import free_port
from rtml_localstack.testing import consume
from rtml_simulator import SimulationConfig, read_transactions, simulate, write_dataset

pytestmark = pytest.mark.integration

CONFIG = SimulationConfig(n_customers=100, n_terminals=200, n_days=20, seed=23)
#: 7 event-days in 2 wall seconds.
SPEED = 7 * 86_400 / 2.0
RATE = 20.0
OUTCOMES = ("approve", "review", "decline")


def _data_row(transaction_id: str) -> int:
    return int(transaction_id.rsplit("-", 1)[1])


class StandInApi:
    """Records requests and answers like the decision API."""

    def __init__(self) -> None:
        self.requests: list[tuple[Transaction, float]] = []
        self.invalid = 0
        self.lock = threading.Lock()
        app = Starlette(routes=[Route("/healthz", self.health),
                                Route("/v1/decisions", self.decide, methods=["POST"])])
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "models": {}, "rule_set_version": "t",
                             "admin_enabled": False})

    async def decide(self, request: Request) -> JSONResponse:
        received = time.time()
        try:
            tx = Transaction.model_validate_json(await request.body())
        except ValidationError as exc:
            with self.lock:
                self.invalid += 1
            return JSONResponse({"detail": str(exc)}, status_code=422)
        with self.lock:
            self.requests.append((tx, received))
        row = _data_row(tx.transaction_id)
        if row % 7 == 0:
            return JSONResponse({"detail": "unavailable"}, status_code=503)
        return JSONResponse({"transaction_id": tx.transaction_id, "outcome": OUTCOMES[row % 3],
                             "score": 0.1, "degraded": row % 5 == 0, "latency_ms": 1.0})

    def __enter__(self) -> StandInApi:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "stand-in API did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(simulate(CONFIG), tmp_path_factory.mktemp("traffic-live-data"))


@pytest.fixture
def api() -> Iterator[StandInApi]:
    with StandInApi() as server:
        yield server


def _command(api: StandInApi, broker: Any, data_dir: Path, topic: str,
             *extra: str) -> list[str]:
    return [sys.executable, "-m", "rtml_cli.traffic", "--api-url", api.url,
            "--bootstrap-servers", broker.bootstrap_servers, "--rate", f"{RATE:g}",
            "--speed", f"{SPEED:g}", "--data", str(data_dir), "--start-day", "2",
            "--labels-topic", topic, "--progress-s", "1", "--json", *extra]


def _summary(stdout: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return summary


def test_payments_reach_the_api_and_their_labels_kafka_after_the_delay(
        kafka_broker: Any, data_dir: Path, api: StandInApi) -> None:
    topic = f"traffic-labels-{os.getpid()}-{time.monotonic_ns()}"
    started = datetime.now(UTC)
    done = subprocess.run(_command(api, kafka_broker, data_dir, topic, "--duration", "5"),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    summary = _summary(done.stdout)
    assert "sent" in done.stderr and "p99" in done.stderr  # progress lines, on stderr

    requests = list(api.requests)
    assert api.invalid == 0
    assert summary["stopped_by"] == "duration"
    assert summary["sent"] == len(requests) == summary["answered"]
    assert 90 <= len(requests) <= 100  # 20/s for 5 s, the data dense enough for every slot
    ids = [tx.transaction_id for tx, _ in requests]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith(summary["run_id"] + "-") for i in ids)

    # Event times: the data set's, mapped so the event clock runs SPEED times faster and
    # ends on now; never ahead of the wall clock.
    times = sorted(tx.event_time for tx, _ in requests)
    assert all(tx.event_time.timestamp() <= received + 1.0 for tx, received in requests)
    oldest = started - timedelta(seconds=(SPEED - 1) * 5 + 5)
    assert times[0] >= oldest
    slot = timedelta(seconds=SPEED / RATE)
    assert times[-1] >= started + timedelta(seconds=5) - 3 * slot  # the last ones near now
    assert times[-1] - times[0] >= timedelta(seconds=SPEED * (len(requests) - 1) / RATE) - 3 * slot
    table = read_transactions(data_dir)
    day = table.column("tx_time_days").to_numpy()
    assert all(day[_data_row(i)] >= 2 for i in ids)  # from --start-day on

    refused = {tx.transaction_id for tx, _ in requests if _data_row(tx.transaction_id) % 7 == 0}
    accepted = {tx.transaction_id: (tx, received) for tx, received in requests
                if tx.transaction_id not in refused}
    assert summary["status_5xx"] == len(refused) > 0
    assert summary["ok"] == len(accepted)
    assert summary["outcomes"] == {o: sum(1 for i in accepted if _data_row(i) % 3 == k)
                                   for k, o in enumerate(OUTCOMES)}
    assert summary["degraded"] == sum(1 for i in accepted if _data_row(i) % 5 == 0)

    labels_summary = summary["labels"]
    assert labels_summary["failed"] == 0
    assert labels_summary["delay_s"] == pytest.approx(2.0)
    produced, pending = labels_summary["produced"], labels_summary["pending"]
    assert produced + pending == len(accepted)
    assert produced > 0 and pending > 0  # the last ~2 s of payments were not due yet

    fraud = table.column("tx_fraud").to_numpy()
    records = consume(kafka_broker.bootstrap_servers, topic, produced, timeout_s=30)
    labels = [(decode(r.value, Label, r.headers), r) for r in records]
    assert len({label.transaction_id for label, _ in labels}) == produced
    for label, record in labels:
        tx, received = accepted[label.transaction_id]  # only accepted payments get one
        assert record.key == label.customer_id.encode() == tx.customer_id.encode()
        assert label.transaction_time == tx.event_time
        assert label.labeled_at - label.transaction_time == timedelta(days=7)
        assert label.is_fraud == bool(fraud[_data_row(label.transaction_id)])
        # Produced once its scaled delay had passed (less the slot the send may have
        # trailed the event clock by, and some slack between the two clocks).
        assert record.timestamp_ms / 1000 >= received + 2.0 - 1 / RATE - 0.2
    with pytest.raises(TimeoutError):
        consume(kafka_broker.bootstrap_servers, topic, produced + 1, timeout_s=3)


def test_sigterm_stops_cleanly_with_a_summary(kafka_broker: Any, data_dir: Path,
                                              api: StandInApi) -> None:
    topic = f"traffic-labels-{os.getpid()}-{time.monotonic_ns()}"
    process = subprocess.Popen(_command(api, kafka_broker, data_dir, topic,
                                        "--flush-pending-labels"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(api.requests) < 20:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "no traffic arrived"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "SIGTERM: stopping" in stderr
    summary = _summary(stdout)
    assert summary["stopped_by"] == "signal"
    assert summary["sent"] == len(api.requests) >= 20
    labels = summary["labels"]
    # --flush-pending-labels: every accepted payment's label went out at the stop.
    assert labels["pending"] == 0 and labels["flushed_pending"] > 0
    assert labels["produced"] == summary["ok"]
    records = consume(kafka_broker.bootstrap_servers, topic, labels["produced"], timeout_s=30)
    assert len(records) == summary["ok"]
