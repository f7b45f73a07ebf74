"""The Flink engine: compile-time checks, and a parity run against the batch engine.

The unit tests need no PyFlink: :mod:`rtml_feature_pipeline.flink.compile`
is pure Python. They pin what the SQL means: which sources shift event time
by how much (the window edges), the one cumulative RANGE window per entity
for its counts, sums and means, the bounded RANGE window (n - 1 ms) per
window length of its min/max features and the interval join that brings
them together, and the features refused at compile time (min/max behind a
label delay).

The integration test replays a small simulated slice (3.6k transactions over
20 days, with their labels 7 days later) plus hand-written edge cases
(simultaneous events written with different UTC offsets, sub-millisecond
fractions, an event 89.999 s and one exactly 90 s after others, malformed
records) to a fresh broker, runs the Flink job once in a local MiniCluster
with ``.venv-flink/bin/python`` (skipped when that venv is missing: ``bash
scripts/flink-venv.sh``), and checks that for every transaction and every
feature the job's value equals :func:`rtml_features.batch.compute_features`
(max abs diff <= 1e-9), and that Redis holds each entity's values as of its
newest transaction, exactly as the job computed them.

The feature set of that run is the 15 baseline features plus features that
exercise what the baseline does not: a 90-second window, a sum, a label field
behind a delay shorter than the labels' 7-day arrival (so a label counts from
when it is known), a delayed amount mean sharing its window with a label
ratio, a ratio with a non-zero default, another night cut-off, the whole
``extended`` set beyond the baseline (the customer's 7/30-day max and 30-day
min amount, its delayed mean amount and known frauds, the terminal's 7-day
mean amount), a terminal max/mean ratio, and an entity with 90-second min/max
windows only (its edge records sit on both sides of the window's bound).
They reuse the baseline's time shifts where they can: each new shift is one
more Kafka reader (the min/max windows need none).
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
from rtml_features.definitions import Agg, Entity, FeatureSet, Ratio
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


EXTENDED_EXTREMES = ["customer_id_max_amount_7day_window", "customer_id_max_amount_30day_window",
                     "customer_id_min_amount_30day_window"]
#: The features view's join to one extremes view: same Kafka record, same rowtime (an
#: interval join with a zero-width bound, so Flink can drop the pair once it is joined).
JOIN = ("JOIN rtml_{entity}_extremes_{window} AS {alias} ON {alias}.kafka_partition = "
        "q.kafka_partition AND {alias}.kafka_offset = q.kafka_offset "
        "AND {alias}.rt BETWEEN q.rt AND q.rt")


def _view(job: Any, name: str) -> str:
    return next(v for v in job.views if f"CREATE TEMPORARY VIEW {name} AS" in v)


def test_the_extended_set_compiles_its_extremes_as_bounded_over_windows(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The registered ``extended`` set compiles whole: one bounded OVER view per window
    length of the customer's min/max windows, over the unshifted reader (no new Kafka
    reader), each joined to the customer's running sums by Kafka record and rowtime."""
    job = compile_feature_set(EXTENDED, OPTIONS)
    produced = [name for query in job.entity_queries for name in query.features]
    assert sorted([*job.row_features, *produced]) == sorted(EXTENDED.names)
    assert supported_subset(EXTENDED) is EXTENDED
    assert len(job.sources) == len(compile_feature_set(BASELINE, OPTIONS).sources) == 11
    customer, terminal = job.entity_queries
    # (t - n, t]: Flink keeps rows stamped >= t - x, so x = n - 1 ms on whole milliseconds.
    assert customer.extreme_windows == (
        "PARTITION BY customer_id ORDER BY rt RANGE BETWEEN "
        "INTERVAL '6 23:59:59.999' DAY TO SECOND(3) PRECEDING AND CURRENT ROW",
        "PARTITION BY customer_id ORDER BY rt RANGE BETWEEN "
        "INTERVAL '29 23:59:59.999' DAY TO SECOND(3) PRECEDING AND CURRENT ROW")
    assert terminal.extreme_windows == ()
    week = _view(job, "rtml_customer_extremes_7d")
    month = _view(job, "rtml_customer_extremes_30d")
    assert "MAX(amount) OVER w AS m0\nFROM rtml_tx_plus_0ms\n" in week
    assert "MAX(amount) OVER w AS m1, MIN(amount) OVER w AS m2\nFROM rtml_tx_plus_0ms\n" in month
    features = _view(job, "rtml_customer_features")
    assert "FROM (SELECT * FROM rtml_customer_running WHERE is_query) AS q\n" in features
    for alias, window in (("x0", "7d"), ("x1", "30d")):
        assert JOIN.format(entity="customer", window=window, alias=alias) in features
    assert ("COALESCE(CAST(m2 AS DOUBLE), CAST(0.0 AS DOUBLE)) AS "
            "`customer_id_min_amount_30day_window`") in features
    # The join key: the unshifted reader's Kafka record, carried by the running sums.
    assert "kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL" in job.sources[0].ddl
    assert all("METADATA" not in source.ddl for source in job.sources[1:])
    assert "rt, kafka_partition, kafka_offset, SUM(c0) OVER w" in _view(
        job, "rtml_customer_running")
    # No extremes, but the record all the same: the vector view joins every entity on it.
    assert "rt, kafka_partition, kafka_offset, SUM(c0) OVER w" in _view(
        job, "rtml_terminal_running")

    capsys.readouterr()
    assert flink_job.main(["--feature-set", "extended", "--print-sql"]) == 0
    assert "CREATE TEMPORARY VIEW rtml_customer_extremes_30d" in capsys.readouterr().out
    assert flink_job.main(["--feature-set", "extended", "--describe"]) == 0
    described = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert list(described) == EXTENDED.names
    assert all("bounded OVER window" in described[name] for name in EXTENDED_EXTREMES)
    assert described["customer_id_min_amount_30day_window"] == (
        "min of amount per customer, window 30d (bounded OVER window: RANGE 30d - 1ms "
        "PRECEDING, joined to the entity's other windows by Kafka record)")
    assert described["customer_id_avg_amount_30day_window"] == (
        "mean of amount per customer, window 30d")


def test_an_entity_with_extremes_only_reads_its_over_views_directly() -> None:
    card = Entity("card", key="customer_id")
    extremes = FeatureSet("extremes_only", [
        W("card_max_amount_1ms", card, Agg.MAX, timedelta(milliseconds=1), field="amount"),
        W("card_min_amount_90s", card, Agg.MIN, timedelta(seconds=90), field="amount"),
        Ratio("card_min_over_max_90s",
              W("card_min_90s", card, Agg.MIN, timedelta(seconds=90), field="amount"),
              W("card_max_90s", card, Agg.MAX, timedelta(seconds=90), field="amount"),
              default=-1.0),
    ])
    job = compile_feature_set(extremes, OPTIONS)
    assert [s.name for s in job.sources] == ["rtml_tx_plus_0ms"]
    (query,) = job.entity_queries
    assert query.window_clause is None and query.contributions == ()
    assert query.extreme_windows == tuple(
        f"PARTITION BY customer_id ORDER BY rt RANGE BETWEEN {interval} "
        "PRECEDING AND CURRENT ROW" for interval in (
            "INTERVAL '0 00:00:00.000' DAY TO SECOND(3)",  # 1 ms: simultaneous rows only
            "INTERVAL '0 00:01:29.999' DAY TO SECOND(3)"))
    assert not any("rtml_card_running" in v or "rtml_card_events" in v for v in job.views)
    # The 90 s min serves the feature and the ratio's numerator: one column.
    assert "MIN(amount) OVER w AS m1, MAX(amount) OVER w AS m2\n" in _view(
        job, "rtml_card_extremes_1m30s")
    features = _view(job, "rtml_card_features")
    assert "FROM rtml_card_extremes_1ms AS x0\nJOIN rtml_card_extremes_1m30s AS x1 ON " \
           "x1.kafka_partition = x0.kafka_partition AND x1.kafka_offset = x0.kafka_offset " \
           "AND x1.rt BETWEEN x0.rt AND x0.rt" in features
    assert features.startswith("CREATE TEMPORARY VIEW rtml_card_features AS\n"
                               "SELECT x0.transaction_id, x0.entity_id, x0.event_ms, ")
    assert ("CASE WHEN (COALESCE(CAST(m2 AS DOUBLE), CAST(0.0 AS DOUBLE))) <> 0 THEN "
            "(COALESCE(CAST(m1 AS DOUBLE), CAST(0.0 AS DOUBLE))) / ") in features


def test_label_delayed_min_and_max_are_refused_naming_the_feature() -> None:
    """An extreme behind a label delay ends before the current row, which no OVER
    window can, and is not a running sum: refused with the window it would need;
    ``supported_subset`` (``--subset``) drops exactly those."""
    week, delay = timedelta(days=7), timedelta(days=7)
    delayed = FeatureSet("with_delayed_max", [
        *EXTENDED.features,
        W("customer_max_amount_7d_delayed", CUSTOMER, Agg.MAX, week, field="amount",
          label_delay=delay),
        Ratio("terminal_min_share_delayed",
              W("terminal_min_amount_delayed", TERMINAL, Agg.MIN, week, field="amount",
                label_delay=delay),
              W("terminal_amount_delayed", TERMINAL, Agg.SUM, week, field="amount",
                label_delay=delay)),
        W("customer_max_amount_1d_zero_delay", CUSTOMER, Agg.MAX, timedelta(days=1),
          field="amount", label_delay=timedelta(0)),  # a zero delay is no delay
    ])
    with pytest.raises(UnsupportedFeature) as raised:
        compile_feature_set(delayed, OPTIONS)
    message = str(raised.value)
    assert "'with_delayed_max' has 2 feature(s) the Flink engine does not support" in message
    assert ("feature 'customer_max_amount_7d_delayed': 'max' behind a label delay "
            "(window (t - 14d, t - 7d]): Flink OVER windows end at the current row") in message
    assert ("feature 'terminal_min_share_delayed' (via its part "
            "'terminal_min_amount_delayed'): 'min' behind a label delay") in message
    assert "undelayed 'max' windows are supported" in message
    assert "Compile supported_subset(feature_set) to run the rest" in message
    assert "zero_delay" not in message

    subset = supported_subset(delayed)
    assert subset.names == [*EXTENDED.names, "customer_max_amount_1d_zero_delay"]
    assert subset.version not in (delayed.version, EXTENDED.version)
    job = compile_feature_set(subset, OPTIONS)
    assert len(job.entity_queries[0].extreme_windows) == 3  # 1, 7 and 30 days

    with pytest.raises(UnsupportedFeature, match="customer_max_amount_7d_delayed"):
        flink_job.compile_from_args(flink_job.parse_args(
            ["--feature-set", f"{__name__}:DELAYED_MAX", "--print-sql"]))
    assert flink_job.compile_from_args(flink_job.parse_args(
        ["--feature-set", f"{__name__}:DELAYED_MAX", "--print-sql", "--subset"])
    ).feature_set.names == BASELINE.names


#: A registered-looking set for ``--feature-set module:ATTRIBUTE`` in the test above.
DELAYED_MAX = FeatureSet("delayed_max", [
    *BASELINE.features,
    W("customer_max_amount_7d_delayed", CUSTOMER, Agg.MAX, timedelta(days=7), field="amount",
      label_delay=timedelta(days=7)),
])


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
from rtml_features.baseline import BASELINE, CUSTOMER, TERMINAL
from rtml_features.extended import EXTENDED
from rtml_features.definitions import Agg, Entity, FeatureSet, Ratio, RowFeature, RowKind
from rtml_features.definitions import WindowAggregate as W

# An entity with min/max windows only (no running sums): its features view is the OVER view.
CARD = Entity("card", key="customer_id")

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
    # The whole extended set beyond the baseline: the customer's 7/30-day max and 30-day
    # min amount (bounded OVER windows joined to the running sums), its delayed mean and
    # known frauds, the terminal's 7-day mean amount.
    *EXTENDED.features[len(BASELINE.features):],
    # An extreme inside a ratio, on the terminal (its mean shares the 7-day window).
    Ratio("terminal_max_over_mean_amount_7d",
          W("terminal_max_amount_7d", TERMINAL, Agg.MAX, timedelta(days=7), field="amount"),
          W("terminal_mean_amount_7d", TERMINAL, Agg.MEAN, timedelta(days=7), field="amount")),
    # 90-second extremes: the edge records sit exactly 89.999 s and 90 s apart.
    W("card_max_amount_90s", CARD, Agg.MAX, timedelta(seconds=90), field="amount"),
    W("card_min_amount_90s", CARD, Agg.MIN, timedelta(seconds=90), field="amount"),
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


#: The first three are simultaneous; the largest and the smallest are among them.
EDGE_AMOUNTS = {"edge-a": 50.01, "edge-b": 40.02, "edge-c": 5.03, "edge-d": 20.04,
                "edge-e": 25.05}


def _edge_records(after: datetime, terminal_id: str) -> list[tuple[bytes, bytes]]:
    """Edge cases, all later than the replayed slice (so never late).

    Three simultaneous events of one customer, written as .250 Z, .250 at
    +02:00 and .250900 (floors to .250); one at +90.249 s at -01:30 (89.999 s
    later: a 90 s window still holds the first three); one exactly 90 s after
    the first three (a 90 s window no longer holds them). Their amounts
    (``EDGE_AMOUNTS``) make a 90 s max or min differ on either side of both
    edges. Then two records every engine refuses: a naive time and broken JSON.
    """
    base = after.replace(second=0, microsecond=0) + timedelta(hours=1)

    def tx(tid: str, time_text: str, customer: str = "edge-1") -> tuple[bytes, bytes]:
        body = {"transaction_id": tid, "event_time": time_text, "customer_id": customer,
                "terminal_id": terminal_id, "amount": EDGE_AMOUNTS.get(tid, 12.34),
                "currency": "EUR"}
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
# ~40 s on a quiet 2-core machine; 190-240 s with a load average of 10-30 from other work.
@pytest.mark.timeout(600)
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
               # The features topic is held to the batch engine on a session cluster
               # (test_flink_cluster.py); here the per-entity rows are.
               "--no-features",
               "--bounded-offsets", f"transactions={_end_offsets(tx_records)}",
               "--bounded-offsets", f"labels={_end_offsets(label_records)}"]
    started = time.monotonic()
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=420,
                         cwd=REPO)
    seconds = time.monotonic() - started
    logs = "\n".join(p.read_text(errors="replace")[-3000:]
                     for p in (tmp_path / "flink-log").glob("*.log"))
    assert run.returncode == 0, f"job failed:\n{run.stderr[-5000:]}\n{logs}"
    print(f"Flink job: {seconds:.1f} s for {len(history)} transactions")
    print("\n".join(line for line in run.stderr.splitlines() if line.startswith("[rtml-flink")))

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
    edge_ids = ["edge-a", "edge-b", "edge-c", "edge-d", "edge-e"]
    assert batch.loc[edge_ids, "customer_nb_tx_90s"].tolist() == [3.0, 3.0, 3.0, 4.0, 2.0]
    # Simultaneous events are in each other's window; 89.999 s back is in, 90 s is out.
    assert batch.loc[edge_ids, "card_max_amount_90s"].tolist() == [50.01] * 4 + [25.05]
    assert batch.loc[edge_ids, "card_min_amount_90s"].tolist() == [5.03] * 4 + [20.04]
    # The extremes are not trivially the transaction's own amount, and 7 days differ from 30.
    max_7d, max_30d = batch["customer_id_max_amount_7day_window"], batch[
        "customer_id_max_amount_30day_window"]
    assert (max_7d > batch["tx_amount"]).mean() > 0.5 and (max_30d > max_7d).any()
    assert (batch["customer_id_min_amount_30day_window"] < batch["tx_amount"]).mean() > 0.5
    assert (batch["terminal_max_over_mean_amount_7d"] > 1).any()

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
