"""The PyFlink job: compiled feature SQL from Kafka to Redis (and optionally a results topic).

Run inside the Flink virtualenv (``scripts/flink-venv.sh`` creates ``.venv-flink``)::

    .venv-flink/bin/python -m rtml_feature_pipeline.flink.job \\
        --bootstrap-servers 127.0.0.1:9092 --redis-url redis://127.0.0.1:6379/0

That runs the job in a local MiniCluster inside this process. To submit it to
a Flink cluster instead (docker-compose's job manager)::

    flink run -m flink-jobmanager:8081 -p 2 -pyclientexec python -pyexec python \\
        -py rtml_feature_pipeline/flink/job.py --parallelism 2 --bootstrap-servers kafka:9092 ...

(:mod:`.submit` does that once and follows the job: docker-compose's ``flink-job``;
see docs/flink.md). ``--print-sql`` prints the compiled statements and
``--describe`` how each feature is computed; both exit at once and need no
PyFlink, so they also work in the main virtualenv.

What it builds (one job, parallelism ``--parallelism``):

1. the Kafka sources and views of :func:`.compile.compile_feature_set`;
2. per entity, its feature view as a DataStream, keyed by entity id, into
   :class:`.sink.RedisEntityWriter` (the same Redis layout as the Python
   engine);
3. every transaction's whole feature vector, joined from its row features and
   entities' values, published to ``--features-topic`` (default ``features``)
   as the Python engine's worker publishes it: a
   :class:`~rtml_common.events.FeatureVector` JSON value keyed by customer id,
   with the same headers, so the scorer runs behind either engine
   (``--no-features`` skips it);
4. with ``--results-topic``, every transaction's row features and every
   entity's values as JSON records ``{transaction_id, kind, entity_id,
   event_ms, features}`` (``kind`` = ``row`` or the entity name), for parity
   checks and audits.

Defaults come from the same environment variables as the Python engine
(``RTML_KAFKA_BOOTSTRAP_SERVERS``, ``RTML_REDIS_URL``,
``RTML_FEATURE_PIPELINE_FEATURE_SET`` / ``_REDIS_TTL_S`` /
``_ALLOWED_LATENESS_S``), so one environment configures either engine.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from rtml_feature_pipeline.flink.compile import (
    FEATURES_TOPIC,
    VECTOR_KIND,
    VECTOR_RECORDS_VIEW,
    CompiledJob,
    SourceOptions,
    compile_feature_set,
    describe_features,
    features_sink_statements,
    supported_subset,
)
from rtml_features.baseline import default_feature_set, get_feature_set
from rtml_features.definitions import FeatureSet

DEFAULT_TTL_S = 38 * 24 * 3600
#: The Redis writer's output goes nowhere, but Flink only runs operators that reach a sink.
DISCARDING_SINK = "org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink"
_STARTED = time.monotonic()


def say(message: str) -> None:
    """Progress on stderr (PyFlink's imports take over the logging configuration)."""
    print(f"[rtml-flink +{time.monotonic() - _STARTED:5.1f}s] {message}", file=sys.stderr,
          flush=True)


def load_feature_set(spec: str) -> FeatureSet:
    """A registered feature set name (``baseline``) or ``package.module:ATTRIBUTE``.

    The second form lets tests and experiments run a feature set that is not
    registered, without changing the job.
    """
    if ":" not in spec:
        return get_feature_set(spec)
    module_name, _, attribute = spec.partition(":")
    value = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(value, FeatureSet):
        raise TypeError(f"{spec} is a {type(value).__name__}, not a FeatureSet")
    return value


def _bounded(values: Sequence[str]) -> dict[str, str]:
    result = {}
    for value in values:
        topic, sep, offsets = value.partition("=")
        if not sep or not topic or not offsets:
            raise argparse.ArgumentTypeError(
                f"--bounded-offsets wants TOPIC=partition:0,offset:N;..., got {value!r}")
        result[topic] = offsets
    return result


def embedded_python_path() -> str:
    """PYTHONPATH for Flink's embedded (``thread`` mode) interpreter.

    pemja starts the base interpreter without this venv's site set-up, so it
    finds neither site-packages nor editable installs (import hooks, not path
    entries): hand it this interpreter's path plus the rtml source roots.
    """
    import rtml_common
    import rtml_feature_pipeline
    import rtml_features

    roots = [os.path.dirname(os.path.dirname(m.__file__ or ""))
             for m in (rtml_feature_pipeline, rtml_features, rtml_common)]
    return os.pathsep.join(dict.fromkeys([*roots, *(p for p in sys.path if p)]))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; defaults from the Python engine's environment variables."""
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="rtml_feature_pipeline.flink.job",
        description="Compute a feature set with Flink: Kafka transactions/labels -> Redis.")
    parser.add_argument("--feature-set", default=env("RTML_FEATURE_PIPELINE_FEATURE_SET")
                        or default_feature_set(),
                        help="registered name, or package.module:ATTRIBUTE (default: %(default)s)")
    parser.add_argument("--subset", action="store_true",
                        help="drop the features Flink does not support instead of failing "
                             "(the subset has its own version, hence its own Redis keys)")
    parser.add_argument("--bootstrap-servers",
                        default=env("RTML_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--group-id", default="rtml-feature-pipeline-flink",
                        help="prefix of the readers' consumer groups (offsets are committed "
                             "for monitoring; the job resumes from its own checkpoints)")
    parser.add_argument("--startup-mode", default="earliest-offset",
                        choices=["earliest-offset", "group-offsets", "latest-offset"])
    parser.add_argument("--bounded-offsets", action="append", default=[], metavar="TOPIC=OFFSETS",
                        help="stop reading TOPIC at partition:0,offset:N;partition:1,offset:M "
                             "(tests, backfills); repeat per topic")
    parser.add_argument("--allowed-lateness-s", type=float,
                        default=float(env("RTML_FEATURE_PIPELINE_ALLOWED_LATENESS_S", "300")))
    parser.add_argument("--idle-timeout-s", type=float, default=0.0,
                        help="0 (default): off. >0: a source partition silent this long stops "
                             "holding back the watermark, e.g. an empty labels topic in the "
                             "first days; but a reader that is merely slow to start then has "
                             "its rows dropped as late (docs/flink.md)")
    parser.add_argument("--redis-url", default=env("RTML_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--redis-ttl-s", type=int,
                        default=int(env("RTML_FEATURE_PIPELINE_REDIS_TTL_S", str(DEFAULT_TTL_S))))
    parser.add_argument("--no-redis", action="store_true", help="do not write Redis")
    parser.add_argument("--features-topic",
                        default=env("RTML_FEATURE_PIPELINE_FLINK_FEATURES_TOPIC", FEATURES_TOPIC),
                        help="publish each transaction's FeatureVector here, as the Python "
                             "engine does (default: %(default)s)")
    parser.add_argument("--no-features", action="store_true",
                        help="do not publish feature vectors (Redis and --results-topic only)")
    parser.add_argument("--results-topic", default=None,
                        help="also publish every transaction's values to this topic (JSON)")
    parser.add_argument("--parallelism", type=int,
                        default=int(env("RTML_FLINK_PARALLELISM", "1")),
                        help="every operator's parallelism (default RTML_FLINK_PARALLELISM "
                             "or 1); on a cluster, at most its free task slots")
    parser.add_argument("--checkpoint-interval-s", type=float, default=0.0,
                        help="0: no checkpoints (bounded runs); set it for long-running jobs")
    parser.add_argument("--python-executable", default=None,
                        help="Python of the Flink Python workers (default: this interpreter "
                             "locally; the cluster's -pyexec when submitted)")
    parser.add_argument("--python-execution-mode", choices=["process", "thread"],
                        default="thread",
                        help="thread (default): the Python sink runs embedded in the task "
                             "manager's JVM (no Python worker process to start, ~2x faster "
                             "for short jobs); process: a separate Python worker per operator")
    parser.add_argument("--print-sql", action="store_true",
                        help="print the compiled SQL and exit (no Flink needed)")
    parser.add_argument("--describe", action="store_true",
                        help="print how each feature is computed, or why it is refused, "
                             "and exit (no Flink needed)")
    args = parser.parse_args(argv)
    args.bounded_offsets = _bounded(args.bounded_offsets)
    if (args.no_redis and args.no_features and not args.results_topic
            and not (args.print_sql or args.describe)):
        parser.error("--no-redis and --no-features without --results-topic would compute "
                     "nothing observable")
    return args


def compile_from_args(args: argparse.Namespace) -> CompiledJob:
    """The compiled SQL for these options (raises UnsupportedFeature unless --subset)."""
    feature_set = load_feature_set(args.feature_set)
    if args.subset:
        feature_set = supported_subset(feature_set)
    options = source_options(args)
    return compile_feature_set(feature_set, options, vectors=not args.no_features)


def source_options(args: argparse.Namespace) -> SourceOptions:
    """The Kafka options of ``args`` (also the features sink's bootstrap servers)."""
    return SourceOptions(bootstrap_servers=args.bootstrap_servers, group_id=args.group_id,
                         startup_mode=args.startup_mode, bounded_offsets=args.bounded_offsets,
                         allowed_lateness=timedelta(seconds=args.allowed_lateness_s))


def run(args: argparse.Namespace) -> float:
    """Build and execute the job (blocks until a bounded job ends); returns its seconds."""
    if args.python_execution_mode == "thread":
        os.environ["PYTHONPATH"] = embedded_python_path()
    from pyflink.common import Configuration, Types
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.datastream.connectors.base import DeliveryGuarantee, Sink
    from pyflink.datastream.connectors.kafka import (
        KafkaRecordSerializationSchema,
        KafkaSink,
    )
    from pyflink.table import StreamTableEnvironment

    from rtml_feature_pipeline.flink.sink import (
        VECTOR_RECORD_TYPE,
        RedisEntityWriter,
        VectorEncoder,
        result_json,
    )

    job = compile_from_args(args)
    feature_set = job.feature_set
    config = Configuration()
    config.set_string("pipeline.name",
                      f"rtml-features-{feature_set.name}-{feature_set.version}")
    config.set_string("parallelism.default", str(args.parallelism))
    config.set_string("table.local-time-zone", "UTC")
    if args.idle_timeout_s > 0:
        config.set_string("table.exec.source.idle-timeout",
                          f"{int(args.idle_timeout_s * 1000)} ms")
    # Python operators hand rows over in bundles: keep Redis freshness under ~0.2 s.
    config.set_string("python.fn-execution.bundle.time", "200")
    python = args.python_executable or sys.executable
    config.set_string("python.executable", python)
    config.set_string("python.client.executable", python)
    if args.checkpoint_interval_s > 0:
        config.set_string("execution.checkpointing.interval",
                          f"{int(args.checkpoint_interval_s * 1000)} ms")
    if args.python_execution_mode:
        config.set_string("python.execution-mode", args.python_execution_mode)
    started = time.monotonic()
    env = StreamExecutionEnvironment.get_execution_environment(config)
    t_env = StreamTableEnvironment.create(env)
    for statement in job.statements:
        t_env.execute_sql(statement)
    say(f"JVM up and {len(job.statements)} statements declared in "
        f"{time.monotonic() - started:.1f} s")

    # One conversion of the one output view: Flink plans all views together, so each
    # source table becomes one Kafka reader shared by every entity's query.
    rows: Any = t_env.to_data_stream(t_env.from_path(job.output_view))
    entities = {q.entity.name: q.features for q in job.entity_queries}
    if not args.no_redis:
        (rows.filter(lambda row: row["kind"] in entities)
             .key_by(lambda row: f"{row['kind']}:{row['entity_id']}", key_type=Types.STRING())
             .process(RedisEntityWriter(feature_set, entities, args.redis_url, args.redis_ttl_s),
                      output_type=Types.INT())
             .name("redis-online-store")
             .sink_to(Sink(DISCARDING_SINK)).name("discard"))
    if args.results_topic:
        serializer = (KafkaRecordSerializationSchema.builder()
                      .set_topic(args.results_topic)
                      .set_value_serialization_schema(SimpleStringSchema())
                      .build())
        sink = (KafkaSink.builder()
                .set_bootstrap_servers(args.bootstrap_servers)
                .set_record_serializer(serializer)
                .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
                .build())
        (rows.filter(lambda row: row["kind"] != VECTOR_KIND)
             .map(result_json, output_type=Types.STRING()).name("results-json").sink_to(sink))
    if not args.no_features:
        # Encoded in Python (the worker's JSON), written by a SQL Kafka sink: the Python
        # DataStream Kafka sink cannot set record headers. The conversion back to a table
        # reads the DataStream above, so no Kafka source is planned twice.
        records = (rows.filter(lambda row: row["kind"] == VECTOR_KIND)
                   .map(VectorEncoder(feature_set), output_type=VECTOR_RECORD_TYPE)
                   .name("feature-vectors"))
        t_env.create_temporary_view(VECTOR_RECORDS_VIEW, t_env.from_data_stream(records))
        ddl, insert = features_sink_statements(source_options(args), args.features_topic)
        t_env.execute_sql(ddl)
        statements = t_env.create_statement_set()
        statements.add_insert_sql(insert)
        statements.attach_as_datastream()

    started = time.monotonic()
    say("submitting the job")
    env.execute(f"rtml-features-{feature_set.name}-{feature_set.version}")
    return time.monotonic() - started


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: describe, print the SQL, or run the job."""
    args = parse_args(argv)
    if args.describe:
        for name, how in describe_features(load_feature_set(args.feature_set)):
            print(f"{name}: {how}")
        return 0
    if args.print_sql:
        print(compile_from_args(args).script())
        return 0
    seconds = run(args)
    say(f"job finished in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
