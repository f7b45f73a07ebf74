"""The Flink engine: compile-time checks, and a parity run against the batch engine.

The unit tests need no PyFlink: :mod:`rtml_feature_pipeline.flink.compile`
is pure Python. They pin what the SQL means: which sources shift event time
by how much (the window edges), the one cumulative RANGE window per entity,
and the features refused at compile time.

The integration test replays a small simulated slice (3.6k transactions over
20 days, with their labels 7 days later) plus hand-written edge cases
(simultaneous events written with different UTC offsets, sub-millisecond
fractions, an event exactly one window after others, malformed records) to a
fresh broker, runs the Flink job once in a local MiniCluster with
``.venv-flink/bin/python`` (skipped when that venv is missing: ``bash
scripts/flink-venv.sh``), and checks that for every transaction and every
feature the job's value equals :func:`rtml_features.batch.compute_features`
(max abs diff <= 1e-9), and that Redis holds each entity's values as of its
newest transaction, exactly as the job computed them.

The feature set of that run is the 15 baseline features plus features that
exercise what the baseline does not: a 90-second window, a sum, a label field
behind a delay shorter than the labels' 7-day arrival (so a label counts from
when it is known), a delayed amount mean sharing its window with a label
ratio, a ratio with a non-zero default, another night cut-off, and the
``extended`` set's features that Flink computes (its ``--subset``: the
customer's delayed mean amount and known frauds, the terminal's 7-day mean
amount). They reuse the baseline's time shifts where they can: each new shift
is one more Kafka reader.
"""

from __future__ import annotations

import doctest
import importlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from rtml_common.events import Label, Transaction
from rtml_common.kafka.admin import ensure_topics
from rtml_feature_pipeline.flink import job as flink_job
from rtml_feature_pipeline.flink.compile import (
    SourceOptions,
    UnsupportedFeature,
    compile_feature_set,
    supported_subset,
)
from rtml_features.baseline import BASELINE, CUSTOMER, TERMINAL
from rtml_features.batch import compute_features
from rtml_features.definitions import Agg, FeatureSet, Ratio
from rtml_features.definitions import WindowAggregate as W
from rtml_features.extended import EXTENDED
from rtml_features.online_store.base import entity_features
from rtml_features.online_store.redis.store import RedisOnlineStore, entity_key

REPO = Path(__file__).resolve().parents[3]
FLINK_PYTHON = Path(os.environ.get("RTML_FLINK_PYTHON", REPO / ".venv-flink" / "bin" / "python"))
OPTIONS = SourceOptions(bootstrap_servers="kafka:9092")
DAY_MS = 86_400_000


def _sources(feature_set: FeatureSet = BASELINE) -> dict[str, str]:
    return {s.name: s.ddl for s in compile_feature_set(feature_set, OPTIONS).sources}


# -- compile time (no PyFlink) -----------------------------------------------------------------


def test_baseline_compiles_all_15_features_into_one_query_per_entity() -> None:
    job = compile_feature_set(BASELINE, OPTIONS)
    assert job.row_features == ("tx_amount", "tx_during_weekend", "tx_during_night")
    by_entity = {q.entity.name: q.features for q in job.entity_queries}
    assert by_entity["customer"] == tuple(entity_features(BASELINE, CUSTOMER))
    assert by_entity["terminal"] == tuple(entity_features(BASELINE, TERMINAL))
    produced = list(job.row_features) + [n for q in job.entity_queries for n in q.features]
    assert sorted(produced) == sorted(BASELINE.names)  # every feature, exactly once
    # One reader per distinct time shift of each topic.
    shifts = {(s.topic, s.shift) for s in job.sources}
    assert shifts == {
        ("transactions", "+0ms"), ("transactions", "+1d"), ("transactions", "+7d"),
        ("transactions", "+30d"), ("transactions", "+8d"), ("transactions", "+14d"),
        ("transactions", "+37d"),
        ("labels", "label start max(tx +7d, labeled_at)"), ("labels", "label end tx +8d"),
        ("labels", "label end tx +14d"), ("labels", "label end tx +37d"),
    }


def test_each_window_is_an_interval_from_delay_to_delay_plus_window() -> None:
    """(t - n, t] for a transaction at s means: counts from s (+0) until s + n, exclusive."""
    job = compile_feature_set(BASELINE, OPTIONS)
    ddl = {s.name: s.ddl for s in job.sources}
    customer, terminal = job.entity_queries
    edges = {(c.source, c.column, c.sign) for c in customer.contributions if c.group == 0}
    assert edges == {("rtml_tx_plus_0ms", "c", 1), ("rtml_tx_plus_0ms", "a", 1),
                     ("rtml_tx_plus_1d", "c", -1), ("rtml_tx_plus_1d", "a", -1)}
    assert f"+ {DAY_MS}, 3)" in ddl["rtml_tx_plus_1d"]
    assert f"+ {30 * DAY_MS}, 3)" in ddl["rtml_tx_plus_30d"]
    # Terminal, 1-day window behind the 7-day label delay: (t - 8d, t - 7d].
    edges = {(c.source, c.column, c.sign) for c in terminal.contributions if c.group == 0}
    assert edges == {("rtml_tx_plus_7d", "c", 1), ("rtml_tx_plus_8d", "c", -1),
                     ("rtml_label_start_plus_7d", "f", 1), ("rtml_label_end_plus_8d", "f", -1)}
    assert f"+ {8 * DAY_MS}, 3)" in ddl["rtml_tx_plus_8d"]
    # A label counts from max(tx + 7d, labeled_at) until tx + 8d, if known before then.
    assert "TO_TIMESTAMP_LTZ(GREATEST(" in ddl["rtml_label_start_plus_7d"]
    assert f"+ {7 * DAY_MS}, " in ddl["rtml_label_start_plus_7d"]
    events = next(v for v in job.views if "VIEW rtml_terminal_events" in v)
    assert f"labeled_ms < tx_ms + {8 * DAY_MS}" in events


def test_one_cumulative_range_window_per_entity_including_simultaneous_rows() -> None:
    job = compile_feature_set(BASELINE, OPTIONS)
    for query in job.entity_queries:
        assert query.window_clause == (
            "PARTITION BY entity_id ORDER BY rt RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW")
        running = next(v for v in job.views if f"VIEW rtml_{query.entity.name}_running" in v)
        assert running.count("OVER w") == len({c.group for c in query.contributions}) + len(
            {(c.group, c.column) for c in query.contributions if c.column != "c"})
    features = next(v for v in job.views if "VIEW rtml_customer_features" in v)
    assert "WHERE is_query" in features
    # Mean of an empty window is 0; amounts are summed as exact decimals.
    assert "CASE WHEN c0 <> 0 THEN CAST(a0 AS DOUBLE) / c0 ELSE CAST(0.0 AS DOUBLE) END" in features
    assert "amount DECIMAL(38, 10)" in job.sources[0].ddl


def test_sources_bound_and_watermark_as_configured() -> None:
    options = SourceOptions(bootstrap_servers="b:1", allowed_lateness=timedelta(seconds=300),
                            bounded_offsets={"transactions": "partition:0,offset:5"})
    for source in compile_feature_set(BASELINE, options).sources:
        assert "WATERMARK FOR rt AS rt - INTERVAL '0 00:05:00.000' DAY TO SECOND(3)" in source.ddl
        bounded = "'scan.bounded.specific-offsets' = 'partition:0,offset:5'" in source.ddl
        assert bounded == (source.topic == "transactions"), source.name
        assert "'json.ignore-parse-errors' = 'true'" in source.ddl


def test_min_and_max_are_refused_naming_the_feature() -> None:
    with_max = FeatureSet("with_max", [
        *BASELINE.features,
        W("customer_max_amount_1day", CUSTOMER, Agg.MAX, timedelta(days=1), field="amount"),
        Ratio("terminal_min_share", W("terminal_min_amount", TERMINAL, Agg.MIN, timedelta(days=1),
                                      field="amount"),
              W("terminal_amount_1day", TERMINAL, Agg.SUM, timedelta(days=1), field="amount")),
    ])
    with pytest.raises(UnsupportedFeature) as raised:
        compile_feature_set(with_max, OPTIONS)
    message = str(raised.value)
    assert "has 2 feature(s) the Flink engine does not support" in message
    assert "feature 'customer_max_amount_1day'" in message and "'max'" in message
    assert "feature 'terminal_min_share' (via its part 'terminal_min_amount')" in message
    assert "supported_subset" in message

    subset = supported_subset(with_max)
    assert subset.names == BASELINE.names
    assert subset.version == BASELINE.version != with_max.version
    assert supported_subset(BASELINE) is BASELINE
    compile_feature_set(subset, OPTIONS)


EXTENDED_EXTREMES = ["customer_id_max_amount_7day_window", "customer_id_max_amount_30day_window",
                     "customer_id_min_amount_30day_window"]


def test_the_extended_set_is_refused_at_compile_time_naming_its_min_and_max(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The registered ``extended`` set: its three amount extremes cannot be running sums,
    the job refuses it before touching Flink; ``--subset`` runs the other 18 features
    under a version of their own (their Redis keys never pass for the full set's)."""
    with pytest.raises(UnsupportedFeature) as raised:
        compile_feature_set(EXTENDED, OPTIONS)
    message = str(raised.value)
    assert "'extended' has 3 feature(s) the Flink engine does not support" in message
    for name in EXTENDED_EXTREMES:
        assert f"feature {name!r}" in message
    with pytest.raises(UnsupportedFeature, match="customer_id_max_amount_7day_window"):
        flink_job.main(["--feature-set", "extended", "--print-sql"])

    subset = supported_subset(EXTENDED)
    assert subset.names == [n for n in EXTENDED.names if n not in EXTENDED_EXTREMES]
    assert len(subset.names) == 18 and subset.version not in (EXTENDED.version,
                                                              BASELINE.version)
    job = compile_feature_set(subset, OPTIONS)
    produced = [name for query in job.entity_queries for name in query.features]
    assert sorted([*job.row_features, *produced]) == sorted(subset.names)
    # The delayed customer windows reuse the baseline's shifts (+7d, +37d): no new reader.
    assert len(job.sources) == len(compile_feature_set(BASELINE, OPTIONS).sources)

    capsys.readouterr()
    assert flink_job.main(["--feature-set", "extended", "--describe"]) == 0
    described = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert list(described) == EXTENDED.names
    assert all("cannot express" in described[name] for name in EXTENDED_EXTREMES)
    assert described["customer_id_avg_amount_30day_window_delayed"] == (
        "mean of amount per customer, window 30d shifted back by 7d")


def test_compile_module_doctest() -> None:
    from rtml_feature_pipeline.flink import compile as compile_module

    result = doctest.testmod(compile_module)
    assert result.attempted > 0 and result.failed == 0


def test_print_sql_needs_no_pyflink(capsys: pytest.CaptureFixture[str]) -> None:
    assert flink_job.main(["--print-sql", "--bootstrap-servers", "k:1"]) == 0
    script = capsys.readouterr().out
    assert script.count("CREATE TEMPORARY TABLE") == 11
    assert "CREATE TEMPORARY VIEW rtml_feature_rows" in script
    assert "pyflink" not in sys.modules


# -- the job, end to end -------------------------------------------------------------------------

#: Written into a module the job imports (--feature-set flink_parity_features:PARITY).
PARITY_MODULE = '''
from datetime import timedelta
from rtml_feature_pipeline.flink.compile import supported_subset
from rtml_features.baseline import BASELINE, CUSTOMER, TERMINAL
from rtml_features.extended import EXTENDED
from rtml_features.definitions import Agg, FeatureSet, Ratio, RowFeature, RowKind
from rtml_features.definitions import WindowAggregate as W

PARITY = FeatureSet("flink_parity", [
    *BASELINE.features,
    RowFeature("tx_until_3am", RowKind.NIGHT, night_end_hour=3),
    W("customer_nb_tx_90s", CUSTOMER, Agg.COUNT, timedelta(seconds=90)),
    W("customer_amount_7d", CUSTOMER, Agg.SUM, timedelta(days=7), field="amount"),
    # Labels arrive 7 days after their transaction, so behind a 1-day delay they count
    # from when they are known, not from when the delay has passed.
    W("customer_fraud_rate_7d_after_1d", CUSTOMER, Agg.MEAN, timedelta(days=7),
      field="is_fraud", label_delay=timedelta(days=1)),
    W("terminal_amount_7d_after_1d", TERMINAL, Agg.MEAN, timedelta(days=7), field="amount",
      label_delay=timedelta(days=1)),
    Ratio("terminal_fraud_rate_7d_after_1d",
          W("terminal_frauds_7d_after_1d", TERMINAL, Agg.SUM, timedelta(days=7),
            field="is_fraud", label_delay=timedelta(days=1)),
          W("terminal_nb_tx_7d_after_1d", TERMINAL, Agg.COUNT, timedelta(days=7),
            label_delay=timedelta(days=1)),
          default=-1.0),
    # The extended set's features that Flink computes (its --subset), on the baseline's readers.
    *supported_subset(EXTENDED).features[len(BASELINE.features):],
])
'''


def _iso(moment: datetime, offset_minutes: int = 0, fraction: str = "") -> str:
    """``moment`` (UTC) written in another UTC offset, with an explicit fraction string."""
    local = moment + timedelta(minutes=offset_minutes)
    if offset_minutes == 0:
        zone = "Z"
    else:
        sign = "+" if offset_minutes > 0 else "-"
        hours, minutes = divmod(abs(offset_minutes), 60)
        zone = f"{sign}{hours:02d}:{minutes:02d}"
    return local.strftime("%Y-%m-%dT%H:%M:%S") + fraction + zone


def _edge_records(after: datetime, terminal_id: str) -> list[tuple[bytes, bytes]]:
    """Edge cases, all later than the replayed slice (so never late).

    Three simultaneous events of one customer, written as .250 Z, .250 at
    +02:00 and .250900 (floors to .250); one at +90.249 s at -01:30; one
    exactly 90 s after the first three (a 90 s window no longer holds them).
    Then two records every engine refuses: a naive time and broken JSON.
    """
    base = after.replace(second=0, microsecond=0) + timedelta(hours=1)

    def tx(tid: str, time_text: str, customer: str = "edge-1") -> tuple[bytes, bytes]:
        body = {"transaction_id": tid, "event_time": time_text, "customer_id": customer,
                "terminal_id": terminal_id, "amount": 12.34 + len(tid), "currency": "EUR"}
        return customer.encode(), json.dumps(body).encode()

    return [
        tx("edge-a", _iso(base, 0, ".250")),
        tx("edge-b", _iso(base, 120, ".250")),
        tx("edge-c", _iso(base, 0, ".250900")),
        tx("edge-d", _iso(base + timedelta(seconds=90), -90, ".249")),
        tx("edge-e", _iso(base + timedelta(seconds=90), 0, ".250")),
        tx("edge-naive", (base + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S"), "edge-2"),
        (b"edge-2", b'{"transaction_id": "broken", '),
    ]


def _end_offsets(records: list[Any]) -> str:
    ends: dict[int, int] = {}
    for record in records:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    return ";".join(f"partition:{p},offset:{o}" for p, o in sorted(ends.items()))


def _frames(tx_records: list[Any], label_records: list[Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The batch engine's inputs: exactly the valid records on the topics."""
    rows = []
    for record in tx_records:
        try:
            event = Transaction.model_validate_json(record.value)
        except ValidationError:
            continue  # the Flink job skips what the Python engines dead-letter
        rows.append({"transaction_id": event.transaction_id, "event_time": event.event_time,
                     "customer_id": event.customer_id, "terminal_id": event.terminal_id,
                     "amount": event.amount})
    labels = [Label.model_validate_json(r.value) for r in label_records]
    history = pd.DataFrame(rows)
    history["event_time"] = pd.to_datetime(history["event_time"], utc=True)
    label_frame = pd.DataFrame({
        "transaction_id": [lb.transaction_id for lb in labels],
        "labeled_at": pd.to_datetime([lb.labeled_at for lb in labels], utc=True),
        "is_fraud": [lb.is_fraud for lb in labels],
    })
    return history, label_frame


@pytest.mark.integration
@pytest.mark.slow
def test_flink_job_matches_the_batch_engine_and_writes_redis(
    fresh_kafka_broker: Any, redis_server: Any, tmp_path: Path
) -> None:
    if not FLINK_PYTHON.exists():
        pytest.skip(f"no Flink virtualenv at {FLINK_PYTHON.parent.parent}: "
                    "run `bash scripts/flink-venv.sh` to create it")
    from rtml_common.config import KafkaSettings
    from rtml_localstack.testing import consume
    from rtml_simulator import SimulationConfig, simulate, write_dataset
    from rtml_simulator.replay import ReplayOptions, replay

    bootstrap = fresh_kafka_broker.bootstrap_servers
    results_topic = "flink-parity-results"
    # Explicit topics: tansu would auto-create them with 4 partitions anyway, but say so.
    ensure_topics(bootstrap, ["transactions", "labels", results_topic],
                  partitions={"transactions": 4, "labels": 4, results_topic: 1},
                  replication_factor=1)
    sim = simulate(SimulationConfig(n_customers=100, n_terminals=200, n_days=20, radius=35.0,
                                    seed=3))
    data = write_dataset(sim, tmp_path / "data")
    report = replay(data, ReplayOptions(create_topics=False),
                    KafkaSettings(bootstrap_servers=bootstrap))
    assert 2_000 <= report.transactions <= 5_000 and report.labels > 1_000

    from confluent_kafka import Producer

    replayed = consume(bootstrap, "transactions", report.transactions, timeout_s=30)
    newest = max(replayed, key=lambda r: json.loads(r.value)["event_time"])
    newest_event = json.loads(newest.value)
    edges = _edge_records(datetime.fromisoformat(newest_event["event_time"]).astimezone(UTC),
                          newest_event["terminal_id"])
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value in edges:
        producer.produce("transactions", value, key)
    assert producer.flush(15) == 0

    tx_records = consume(bootstrap, "transactions", report.transactions + len(edges),
                         timeout_s=30)
    label_records = consume(bootstrap, "labels", report.labels, timeout_s=30)
    history, labels = _frames(tx_records, label_records)
    assert len(history) == report.transactions + 5  # the naive and broken records are out

    (tmp_path / "flink_parity_features.py").write_text(PARITY_MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        parity: FeatureSet = importlib.import_module("flink_parity_features").PARITY
    finally:
        sys.path.remove(str(tmp_path))
    redis_server.client().flushdb()
    ttl_s = 3 * 24 * 3600
    env = {**os.environ, "JVM_ARGS": "-Xmx512m", "FLINK_LOG_DIR": str(tmp_path / "flink-log"),
           "PYTHONPATH": str(tmp_path)}
    command = [str(FLINK_PYTHON), "-m", "rtml_feature_pipeline.flink.job",
               "--feature-set", "flink_parity_features:PARITY",
               "--bootstrap-servers", bootstrap, "--redis-url", redis_server.url,
               "--redis-ttl-s", str(ttl_s), "--results-topic", results_topic,
               "--bounded-offsets", f"transactions={_end_offsets(tx_records)}",
               "--bounded-offsets", f"labels={_end_offsets(label_records)}"]
    started = time.monotonic()
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240,
                         cwd=REPO)
    seconds = time.monotonic() - started
    logs = "\n".join(p.read_text(errors="replace")[-3000:]
                     for p in (tmp_path / "flink-log").glob("*.log"))
    assert run.returncode == 0, f"job failed:\n{run.stderr[-5000:]}\n{logs}"
    print(f"Flink job: {seconds:.1f} s for {len(history)} transactions")

    # Per transaction: one row record and one per entity.
    kinds = 1 + len(parity.entities)
    results = consume(bootstrap, results_topic, kinds * len(history), timeout_s=60)
    flink: dict[str, dict[str, float]] = {}
    seen: set[tuple[str, str]] = set()
    for record in results:
        value = json.loads(record.value)
        seen.add((value["transaction_id"], value["kind"]))
        flink.setdefault(value["transaction_id"], {}).update(value["features"])
    assert len(seen) == kinds * len(history)
    got = pd.DataFrame.from_dict(flink, orient="index")

    batch = compute_features(parity, history, history, labels).set_index("transaction_id")
    assert set(got.index) == set(batch.index)
    got = got.loc[batch.index]
    diffs = {name: float(np.max(np.abs(got[name].to_numpy() - batch[name].to_numpy())))
             for name in parity.names}
    worst = max(diffs, key=lambda n: diffs[n])
    assert diffs[worst] <= 1e-9, f"max abs diff {diffs[worst]} on {worst}: {diffs}"
    print(f"{len(parity.names)} features x {len(history)} transactions: max abs diff "
          f"{diffs[worst]:.3g} ({worst})")
    # Not vacuous: labels reached the delayed windows, ties and edges were exercised.
    assert batch["terminal_id_risk_30day_window"].max() > 0
    assert batch["terminal_fraud_rate_7d_after_1d"].max() > 0
    assert (batch["terminal_fraud_rate_7d_after_1d"] == -1.0).any()  # empty window: default
    assert batch["customer_fraud_rate_7d_after_1d"].max() > 0
    edge = batch.loc[["edge-a", "edge-b", "edge-c", "edge-d", "edge-e"], "customer_nb_tx_90s"]
    assert edge.tolist() == [3.0, 3.0, 3.0, 4.0, 2.0]

    # Redis: each entity's values as of its newest transaction, bit-identical to the job's.
    store = RedisOnlineStore(redis_server.url, ttl_s=ttl_s)
    client = redis_server.client()
    times = history.assign(ms=(history["event_time"] - pd.Timestamp(0, tz="UTC"))
                           // pd.Timedelta(milliseconds=1))
    for entity in parity.entities:
        newest_tx = times.sort_values(["ms", "transaction_id"]).groupby(entity.key).tail(1)
        ids = [(entity.name, str(i)) for i in newest_tx[entity.key]]
        stored = store.read(parity, ids)
        names = entity_features(parity, entity)
        pattern = f"rtml:fs:{parity.name}:{parity.version}:{entity.name}:*"
        assert len(client.keys(pattern)) == len(ids)
        for (_, entity_id), entry, tid, ms in zip(ids, stored, newest_tx["transaction_id"],
                                                  newest_tx["ms"], strict=True):
            assert entry is not None, (entity.name, entity_id)
            assert (entry.transaction_id, entry.as_of_ms) == (tid, ms), (entity.name, entity_id)
            assert entry.values == {n: flink[tid][n] for n in names}
            assert max(abs(entry.values[n] - batch.loc[tid, n]) for n in names) <= 1e-9
            assert 0 < client.ttl(entity_key(parity, entity.name, entity_id)) <= ttl_s
