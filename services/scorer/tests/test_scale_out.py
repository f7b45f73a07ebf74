"""Two ``python -m rtml_scorer`` processes in one consumer group: the partitions are split,
and a member joining and leaving mid-stream loses nothing and publishes nothing twice.

Real processes (not threads): what is tested is the group protocol between
two independent clients, the commit on revoke and a SIGTERM'd member
leaving cleanly — exactly what happens when a deployment scales out and in.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import pytest

from rtml_common.events import Prediction, ShadowScore
from rtml_common.serde import decode
from rtml_localstack.environment import without_developer_settings

pytestmark = pytest.mark.integration


class ScorerProcess:
    """A scorer subprocess whose log lines are collected as they come."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "rtml_scorer"], env=env,
                                        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def owns_features(self) -> bool:
        """Whether the last assignment it logged includes a features partition."""
        # The model-events watcher logs its own "assigned [...]" lines: skip them.
        assigned = [line for line in self.lines
                    if "assigned [" in line and "'model-events'" not in line]
        return bool(assigned) and "'features'" in assigned[-1]

    def terminate(self, timeout_s: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout_s)
        self._reader.join(5)
        return code

    def log(self) -> str:
        return "".join(self.lines[-30:])


def test_two_processes_split_partitions_without_loss_or_duplicates(deployment: Any) -> None:
    d = deployment
    champion = d.register(d.xgb_model(1), "champion")
    shadow = d.register(d.xgb_model(2), "shadow")
    env = without_developer_settings(os.environ)
    env.update({
        "RTML_KAFKA_BOOTSTRAP_SERVERS": d.broker.bootstrap_servers,
        "RTML_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "RTML_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "RTML_KAFKA_COMMIT_INTERVAL_S": "0.2",
        "RTML_MLFLOW_TRACKING_URI": d.registry.tracking_uri,
        "RTML_SCORER_MODEL_NAME": d.name,
        "RTML_SCORER_CONSUMER_GROUP": f"g-{d.name}",
        "RTML_TELEMETRY_LOG_JSON": "false",
    })
    produced: list[str] = []
    stop_producing = threading.Event()

    def produce_steadily() -> None:
        customers = d.customers()
        i = 0
        while not stop_producing.is_set():
            chunk = [d.vector(i + k, customers[(i + k) % 40], d.at((i + k) / 100))
                     for k in range(20)]
            d.produce(chunk)
            produced.extend(v.transaction_id for v in chunk)
            i += 20
            time.sleep(0.1)

    first = ScorerProcess(env)
    second: ScorerProcess | None = None
    producer = threading.Thread(target=produce_steadily, daemon=True)
    try:
        d.wait_until(first.owns_features, 60, "the first scorer's assignment")
        producer.start()
        time.sleep(1.0)
        second = ScorerProcess(env)  # joins mid-stream ...
        d.wait_until(second.owns_features, 60, "the second scorer's share")
        time.sleep(2.0)
        assert second.terminate() == 0, second.log()  # ... and leaves mid-stream
        time.sleep(1.0)
        stop_producing.set()
        producer.join(10)
        d.wait_until(lambda: len(d.read_all("predictions", idle_s=0.5)) >= len(produced), 60,
                     "every prediction")
        assert first.terminate() == 0, first.log()
    finally:
        stop_producing.set()
        for process in (first, second):
            if process is not None and process.process.poll() is None:
                process.process.kill()

    second_stopped = [line for line in second.lines if "stopped:" in line]
    assert second_stopped and " 0 predictions" not in second_stopped[-1], second.log()
    predictions = [decode(r.value(), Prediction) for r in d.read_all("predictions")]
    shadows = [decode(r.value(), ShadowScore) for r in d.read_all("shadow-scores")]
    for outputs, version in ((predictions, champion), (shadows, shadow)):
        counts = Counter((o.transaction_id, o.model_version) for o in outputs)
        duplicates = [key for key, n in counts.items() if n > 1]
        assert not duplicates, f"published twice: {duplicates[:5]}"
        assert set(counts) == {(tx, version) for tx in produced}  # none lost
