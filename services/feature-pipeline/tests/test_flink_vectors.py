"""Compile-time checks of the Flink job's ``features`` output and of its submitter.

No PyFlink needed: the vector view, the Kafka sink's SQL and the command the
docker-compose ``flink-job`` service runs are plain text. The records
themselves are checked end to end, on a session cluster, by
``test_flink_cluster.py``.
"""

from __future__ import annotations

import re

import pytest

from rtml_common.events import FeatureVector
from rtml_common.serde import headers_for
from rtml_common.topics import spec_for_event
from rtml_feature_pipeline.flink import job as flink_job
from rtml_feature_pipeline.flink import submit
from rtml_feature_pipeline.flink.compile import (
    FEATURE_VECTOR_HEADERS,
    FEATURES_TOPIC,
    VECTOR_KIND,
    VECTOR_VIEW,
    SourceOptions,
    compile_feature_set,
    features_sink_statements,
)
from rtml_features.baseline import BASELINE
from rtml_features.extended import EXTENDED

OPTIONS = SourceOptions(bootstrap_servers="kafka:9092")


def _view(sql: list[str] | tuple[str, ...], name: str) -> str:
    return next(v for v in sql if v.startswith(f"CREATE TEMPORARY VIEW {name} AS"))


def test_the_worker_s_topic_and_headers() -> None:
    assert FEATURES_TOPIC == spec_for_event(FeatureVector).name == "features"
    assert list(FEATURE_VECTOR_HEADERS) == headers_for(FeatureVector)


def test_vectors_join_every_entity_on_the_kafka_record_and_keep_the_set_order() -> None:
    job = compile_feature_set(EXTENDED, OPTIONS, vectors=True)
    assert job.vector_view == VECTOR_VIEW
    sql = _view(job.views, VECTOR_VIEW)
    # One zero-width interval join per entity, on the record: no state kept past the watermark.
    for index, entity in enumerate(EXTENDED.entities):
        assert (f"JOIN rtml_{entity.name}_features AS e{index} ON e{index}.kafka_partition = "
                f"r.kafka_partition AND e{index}.kafka_offset = r.kafka_offset "
                f"AND e{index}.rt BETWEEN r.rt AND r.rt") in sql
    names = re.findall(r"'([^']+)', (?:r|e\d)\.`", sql)
    assert names == EXTENDED.names
    assert "r.`tx_amount`" in sql and "e0.`customer_id_max_amount_30day_window`" in sql
    output = _view(job.views, job.output_view)
    assert f"'{VECTOR_KIND}' AS kind" in output and f"FROM {VECTOR_VIEW}" in output
    # Every entity view carries the record and rowtime the join needs.
    for query in job.entity_queries:
        assert re.search(r"SELECT (q|x0)\.transaction_id, \1\.entity_id, \1\.event_ms, "
                         r"\1\.rt, \1\.kafka_partition, \1\.kafka_offset, ",
                         _view(job.views, query.view)), query.view


def test_without_vectors_nothing_changes_in_the_sources() -> None:
    plain = compile_feature_set(BASELINE, OPTIONS)
    with_vectors = compile_feature_set(BASELINE, OPTIONS, vectors=True)
    assert plain.vector_view is None
    assert VECTOR_VIEW not in plain.script()
    assert [s.ddl for s in plain.sources] == [s.ddl for s in with_vectors.sources]


def test_features_sink_writes_raw_key_and_value_with_the_worker_s_headers() -> None:
    ddl, insert = features_sink_statements(OPTIONS)
    assert "'topic' = 'features'" in ddl
    assert "'key.format' = 'raw'" in ddl and "'key.fields' = 'record_key'" in ddl
    assert "'value.format' = 'raw'" in ddl and "'value.fields-include' = 'EXCEPT_KEY'" in ddl
    assert "headers MAP<STRING, BYTES> METADATA" in ddl
    assert "'sink.delivery-guarantee' = 'at-least-once'" in ddl
    for key, value in headers_for(FeatureVector):
        assert f"'{key}', CAST('{value.decode()}' AS BYTES)" in insert
    ddl, _ = features_sink_statements(OPTIONS, topic="features-flink")
    assert "'topic' = 'features-flink'" in ddl


def test_job_options_for_features_and_parallelism(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RTML_FLINK_PARALLELISM", raising=False)
    monkeypatch.delenv("RTML_FEATURE_PIPELINE_FLINK_FEATURES_TOPIC", raising=False)
    args = flink_job.parse_args([])
    assert (args.features_topic, args.no_features, args.parallelism) == ("features", False, 1)
    assert flink_job.compile_from_args(args).vector_view == VECTOR_VIEW
    monkeypatch.setenv("RTML_FLINK_PARALLELISM", "4")
    assert flink_job.parse_args([]).parallelism == 4
    quiet = flink_job.parse_args(["--no-features"])
    assert flink_job.compile_from_args(quiet).vector_view is None
    with pytest.raises(SystemExit):
        flink_job.parse_args(["--no-features", "--no-redis"])


def test_submit_command_runs_the_job_detached_with_the_configured_parallelism(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RTML_FLINK_PARALLELISM", "3")
    monkeypatch.setenv("RTML_FLINK_JOBMANAGER", "jm:8081")
    monkeypatch.setenv("RTML_FEATURE_SET", "baseline")
    args, job_args = submit.parse_args(["--flink", "/opt/flink/bin/flink", "--python",
                                        "/usr/local/bin/python", "--",
                                        "--checkpoint-interval-s=60"])
    assert (args.jobmanager, args.parallelism) == ("jm:8081", 3)
    command = submit.submit_command(args, job_args)
    assert command[:8] == ["/opt/flink/bin/flink", "run", "-d", "-m", "jm:8081", "-p", "3",
                           "-pyclientexec"]
    assert command[command.index("-py") + 1] == flink_job.__file__
    # The job's parallelism comes from the environment: the flink CLI would take a
    # --parallelism right after -py FILE for its own.
    assert command[command.index("-py") + 2:] == ["--checkpoint-interval-s=60"]
    assert submit.submit_env(args)["RTML_FLINK_PARALLELISM"] == "3"
    assert submit.job_name(job_args) == f"rtml-features-baseline-{BASELINE.version}"
    assert submit.job_name(["--feature-set", "extended"]) == (
        f"rtml-features-extended-{EXTENDED.version}")
    with pytest.raises(SystemExit):
        submit.parse_args(["--parallelism", "0"])
