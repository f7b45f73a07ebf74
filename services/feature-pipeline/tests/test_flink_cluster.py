"""The Flink job on a standalone session cluster, parallelism 2, publishing ``features``.

A job manager and two task managers (one slot each) are started from the
PyFlink package's own Flink distribution in ``.venv-flink``
(:class:`rtml_localstack.launchers.flink.FlinkSessionCluster`), and the job is
submitted as docker-compose's ``flink-job`` service submits it:
:mod:`rtml_feature_pipeline.flink.submit` runs ``bin/flink run -d -p 2`` and
follows the job until it finishes. The input is a simulated slice on a
4-partition ``transactions`` topic, so each of the two parallel readers owns
two partitions and the watermark is the minimum over both.

What it holds the job to:

* the records on ``features`` are the Python engine's ``FeatureVector``
  events: they validate as :class:`rtml_common.events.FeatureVector`, carry the
  worker's headers (``headers_for(FeatureVector)``), are keyed by customer id
  (each customer's vectors on one partition), one per transaction, revision 0
  (Flink emits each vector once, final, when the watermark passes it);
* every vector equals the batch engine's (:func:`rtml_features.batch.compute_features`)
  within 1e-9 for every feature of ``extended`` (the registered set with the
  most kinds of window: label-delayed, min/max, ratios), and its event time,
  amount and ids equal the transaction's;
* the job ran with parallelism 2 on the two task managers, and Redis holds each
  entity's values as of its newest transaction, equal to that transaction's vector.

Skipped when ``.venv-flink`` is missing (``bash scripts/flink-venv.sh``).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rtml_common.events import FeatureVector, Label, Transaction
from rtml_common.kafka.admin import ensure_topics
from rtml_common.serde import headers_for
from rtml_feature_pipeline.flink.compile import FEATURES_TOPIC
from rtml_features.batch import compute_features
from rtml_features.extended import EXTENDED
from rtml_features.online_store.base import entity_features
from rtml_features.online_store.redis.store import RedisOnlineStore
from rtml_localstack.launchers.flink import FlinkSessionCluster

REPO = Path(__file__).resolve().parents[3]
FLINK_PYTHON = Path(os.environ.get("RTML_FLINK_PYTHON", REPO / ".venv-flink" / "bin" / "python"))
PARALLELISM = 2
PARTITIONS = 4


def _needs_flink_venv() -> None:
    if not FLINK_PYTHON.exists():
        pytest.skip(f"no Flink virtualenv at {FLINK_PYTHON.parent.parent}: "
                    "run `bash scripts/flink-venv.sh` to create it")


@pytest.fixture
def flink_cluster(tmp_path: Path) -> Iterator[FlinkSessionCluster]:
    """Job manager + 2 task managers (1 slot each) on free 127.0.0.1 ports, stopped after."""
    _needs_flink_venv()
    python_path = subprocess.run(
        [str(FLINK_PYTHON), "-c", "from rtml_feature_pipeline.flink.job import "
         "embedded_python_path as p; print(p())"],
        capture_output=True, text=True, timeout=120, check=True).stdout.strip()
    cluster = FlinkSessionCluster(FLINK_PYTHON, tmp_path / "flink", task_managers=2,
                                  slots_per_task_manager=1,
                                  task_manager_env={"PYTHONPATH": python_path})
    started = time.monotonic()
    with cluster:
        print(f"session cluster up in {time.monotonic() - started:.1f} s "
              f"(REST {cluster.rest_address})")
        yield cluster


def _end_offsets(records: list[Any]) -> str:
    ends: dict[int, int] = {}
    for record in records:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    return ";".join(f"partition:{p},offset:{o}" for p, o in sorted(ends.items()))


def _frames(tx_records: list[Any], label_records: list[Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The batch engine's inputs: exactly the records on the topics."""
    events = [Transaction.model_validate_json(r.value) for r in tx_records]
    history = pd.DataFrame([{"transaction_id": e.transaction_id, "event_time": e.event_time,
                             "customer_id": e.customer_id, "terminal_id": e.terminal_id,
                             "amount": e.amount} for e in events])
    history["event_time"] = pd.to_datetime(history["event_time"], utc=True)
    labels = [Label.model_validate_json(r.value) for r in label_records]
    label_frame = pd.DataFrame({
        "transaction_id": [lb.transaction_id for lb in labels],
        "labeled_at": pd.to_datetime([lb.labeled_at for lb in labels], utc=True),
        "is_fraud": [lb.is_fraud for lb in labels],
    })
    return history, label_frame


def _get(cluster: FlinkSessionCluster, path: str) -> Any:
    with urllib.request.urlopen(f"http://{cluster.rest_address}{path}", timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.integration
@pytest.mark.slow
# ~1.5 min on a quiet 2-core machine (cluster start, planning, the job); bounded at 10 min
# (it took ~5 min with a load average of 30 from other work).
@pytest.mark.timeout(600)
def test_session_cluster_runs_the_job_with_parallelism_2_and_publishes_features(
    flink_cluster: FlinkSessionCluster, fresh_kafka_broker: Any, redis_server: Any,
    tmp_path: Path,
) -> None:
    from rtml_common.config import KafkaSettings
    from rtml_localstack.testing import consume
    from rtml_simulator import SimulationConfig, simulate, write_dataset
    from rtml_simulator.replay import ReplayOptions, replay

    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, ["transactions", "labels", FEATURES_TOPIC],
                  partitions={"transactions": PARTITIONS, "labels": PARTITIONS,
                              FEATURES_TOPIC: PARTITIONS}, replication_factor=1)
    sim = simulate(SimulationConfig(n_customers=100, n_terminals=200, n_days=20, radius=35.0,
                                    seed=3))
    report = replay(write_dataset(sim, tmp_path / "data"), ReplayOptions(create_topics=False),
                    KafkaSettings(bootstrap_servers=bootstrap))
    tx_records = consume(bootstrap, "transactions", report.transactions, timeout_s=30)
    label_records = consume(bootstrap, "labels", report.labels, timeout_s=30)
    assert {r.partition for r in tx_records} == set(range(PARTITIONS))
    history, labels = _frames(tx_records, label_records)

    redis_server.client().flushdb()
    arguments = ["--feature-set", EXTENDED.name, "--bootstrap-servers", bootstrap,
                 "--redis-url", redis_server.url,
                 "--bounded-offsets", f"transactions={_end_offsets(tx_records)}",
                 "--bounded-offsets", f"labels={_end_offsets(label_records)}"]
    # Submitted as docker-compose's flink-job service does: flink.submit runs `flink run -d
    # -p 2` once and follows the job until it ends (0: FINISHED).
    assert flink_cluster.home is not None
    submitter = [str(FLINK_PYTHON), "-m", "rtml_feature_pipeline.flink.submit",
                 "--jobmanager", flink_cluster.rest_address, "--parallelism", str(PARALLELISM),
                 "--flink", str(flink_cluster.home / "bin" / "flink"),
                 "--python", str(FLINK_PYTHON), "--wait-s", "60", "--poll-s", "1",
                 "--state-file", str(tmp_path / "job.state"), "--", *arguments]
    started = time.monotonic()
    run = subprocess.run(submitter, env={**os.environ, **flink_cluster.env(),
                                         "JVM_ARGS": "-Xmx512m"},
                         capture_output=True, text=True, timeout=420, cwd=REPO)
    seconds = time.monotonic() - started
    assert run.returncode == 0, (f"submit failed:\n{run.stdout[-3000:]}\n"
                                 f"{run.stderr[-5000:]}\n{flink_cluster.logs()}")
    assert (tmp_path / "job.state").read_text() == "FINISHED\n"
    assert "submitting: " in run.stdout and " -d " in run.stdout
    print(f"submit + job {seconds:.1f} s for {len(history)} transactions")

    # The job: finished, parallelism 2, on both task managers.
    jobs = _get(flink_cluster, "/jobs/overview")["jobs"]
    assert [j["state"] for j in jobs] == ["FINISHED"]
    detail = _get(flink_cluster, f"/jobs/{jobs[0]['jid']}")
    assert max(v["parallelism"] for v in detail["vertices"]) == PARALLELISM
    hosts = set()
    for vertex in detail["vertices"]:
        if vertex["parallelism"] == PARALLELISM:
            managers = _get(flink_cluster,
                            f"/jobs/{jobs[0]['jid']}/vertices/{vertex['id']}/taskmanagers")
            hosts |= {tm["taskmanager-id"] for tm in managers["taskmanagers"]}
    assert len(hosts) == 2, f"subtasks ran on {hosts}"

    # features: the worker's records, one per transaction.
    records = consume(bootstrap, FEATURES_TOPIC, len(history), timeout_s=60)
    vectors = {}
    partitions_of: dict[str, set[int]] = {}
    for record in records:
        # The same headers (Flink writes them from a map: in no fixed order; readers
        # look them up by name, rtml_common.serde.header_value).
        assert sorted(record.headers) == sorted(headers_for(FeatureVector))
        vector = FeatureVector.model_validate_json(record.value)
        assert record.key == vector.customer_id.encode()
        assert vector.transaction_id not in vectors, f"two vectors for {vector.transaction_id}"
        vectors[vector.transaction_id] = vector
        partitions_of.setdefault(vector.customer_id, set()).add(record.partition)
    assert set(vectors) == set(history["transaction_id"])
    assert all(len(p) == 1 for p in partitions_of.values())  # keyed: one partition a customer
    assert {v.revision for v in vectors.values()} == {0}
    assert {(v.feature_set, v.feature_set_version) for v in vectors.values()} == {
        (EXTENDED.name, EXTENDED.version)}
    assert all(list(v.features) == EXTENDED.names for v in vectors.values())
    by_id = history.set_index("transaction_id")
    for tid, vector in vectors.items():
        row = by_id.loc[tid]
        assert (vector.customer_id, vector.terminal_id, vector.amount) == (
            row["customer_id"], row["terminal_id"], row["amount"])
        assert vector.event_time == row["event_time"].to_pydatetime().astimezone(UTC)
        assert vector.computed_at <= datetime.now(UTC)

    batch = compute_features(EXTENDED, history, history, labels).set_index("transaction_id")
    got = pd.DataFrame.from_dict({t: v.features for t, v in vectors.items()}, orient="index")
    got = got.loc[batch.index]
    diffs = {n: float(np.max(np.abs(got[n].to_numpy() - batch[n].to_numpy())))
             for n in EXTENDED.names}
    worst = max(diffs, key=lambda n: diffs[n])
    assert diffs[worst] <= 1e-9, f"max abs diff {diffs[worst]} on {worst}: {diffs}"
    print(f"{len(EXTENDED.names)} features x {len(vectors)} vectors on {FEATURES_TOPIC}: "
          f"max abs diff {diffs[worst]:.3g} ({worst})")
    assert batch["terminal_id_risk_30day_window"].max() > 0  # labels reached the delayed windows

    # Redis: each entity as of its newest transaction, equal to that transaction's vector.
    store = RedisOnlineStore(redis_server.url, ttl_s=3600)
    ms = (history["event_time"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    times = history.assign(ms=ms)
    for entity in EXTENDED.entities:
        newest = times.sort_values(["ms", "transaction_id"]).groupby(entity.key).tail(1)
        ids = [(entity.name, str(i)) for i in newest[entity.key]]
        names = entity_features(EXTENDED, entity)
        for entry, tid in zip(store.read(EXTENDED, ids), newest["transaction_id"], strict=True):
            assert entry is not None and entry.transaction_id == tid
            assert entry.values == {n: vectors[tid].features[n] for n in names}


def test_session_cluster_configuration_is_its_own(tmp_path: Path) -> None:
    """conf/ under the cluster's workdir: free loopback ports, PyFlink's Java options kept."""
    _needs_flink_venv()
    import yaml

    cluster = FlinkSessionCluster(FLINK_PYTHON, tmp_path / "flink", task_managers=2)
    cluster.prepare()
    assert cluster.home is not None and (cluster.home / "bin" / "jobmanager.sh").is_file()
    written = yaml.safe_load((cluster.conf_dir / "config.yaml").read_text())
    assert written["rest.port"] == str(cluster.rest_port) != "8081"
    assert written["jobmanager.rpc.port"] == str(cluster.rpc_port) != "6123"
    for key in ("jobmanager.bind-host", "taskmanager.bind-host", "taskmanager.host",
                "rest.bind-address", "jobmanager.rpc.address"):
        assert written[key] == "127.0.0.1", key
    assert "--add-opens=java.base/java.lang=ALL-UNNAMED" in written["env.java.opts.all"]
    assert (cluster.conf_dir / "log4j-console.properties").is_file()
    assert cluster.env()["FLINK_CONF_DIR"] == str(cluster.conf_dir)
