"""Schemathesis against the shadow auditor's OpenAPI, the service running as for real.

``service.run`` (consumer, evaluator and uvicorn, as ``python -m`` starts them)
on the fixture broker, fed champion and shadow scores with labels until its
report exists, then fuzzed over HTTP with and without the approval key.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from pydantic import SecretStr

from rtml_common.config import KafkaSettings
from rtml_common.events import Label, Prediction, ShadowScore
from rtml_common.kafka.producer import EventProducer
from rtml_localstack.ports import free_port
from rtml_localstack.testing import TEST_SESSION_TIMEOUT_MS
from rtml_shadow_auditor import service
from rtml_shadow_auditor.config import Settings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_environment")]
KEY = "fuzz-auditor-key-0123456789"
T0 = datetime(2018, 6, 1, tzinfo=UTC)


def scored(name: str, n: int) -> list[Any]:
    out: list[Any] = []
    for i in range(n):
        at = T0 + timedelta(minutes=5 * i)
        common = {"transaction_id": f"{name}-tx-{i}", "customer_id": f"c{i % 20}",
                  "event_time": at, "model_name": name, "scored_at": at}
        out += [Prediction(**common, model_version="1", score=(i % 10) / 10, latency_ms=1.0),
                ShadowScore(**common, model_version="2", score=(i % 7) / 7, latency_ms=2.0,
                            champion_version="1"),
                Label(transaction_id=f"{name}-tx-{i}", customer_id=f"c{i % 20}",
                      transaction_time=at, labeled_at=at + timedelta(hours=6),
                      is_fraud=i % 9 == 0)]
    return out


def test_auditor_api_conforms_to_its_openapi(fuzz_api: Any, kafka_broker: Any,
                                              tmp_path: Path) -> None:
    name = f"fuzz-auditor-{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers,
                          session_timeout_ms=TEST_SESSION_TIMEOUT_MS, idempotent_producer=False)
    with EventProducer(kafka) as producer:
        for event in scored(name, 200):
            producer.send(event)
    port = free_port()
    settings = Settings(model_name=name, consumer_group=f"g-{name}", state_dir=tmp_path,
                        report_dir=tmp_path / "reports", http_host="127.0.0.1", http_port=port,
                        evaluate_interval_s=0.5, api_key=SecretStr(KEY),
                        registry_url=f"http://127.0.0.1:{free_port()}")
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(settings, kafka),
                              kwargs={"stop": stop, "install_signal_handlers": False},
                              daemon=True)
    runner.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the report exists once a champion was evaluated
            try:
                if httpx.get(f"{base}/report", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("the auditor wrote no report within 60 s")
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        with_key = fuzz_api("shadow auditor (with key)", schema, headers={"X-API-Key": KEY},
                            base_url=base)
        without = fuzz_api("shadow auditor (no key)", schema, base_url=base)
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive()
    for report in (with_key, without):
        print(report.summary())
        assert len(report.operations) == 5 and report.requests >= 5
    assert not with_key.findings, with_key.summary()
    assert not without.findings, without.summary()
