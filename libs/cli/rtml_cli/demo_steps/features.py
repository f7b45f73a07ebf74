"""Demo step: run the streaming feature worker over what was replayed.

The worker (the feature-pipeline service's Kafka engine, in-process) reads
``transactions`` and ``labels`` from the beginning with a group of its own,
computes the configured feature set (``RTML_FEATURE_SET``, default
``extended``) per transaction, writes each customer's and terminal's prefix
logs (and, in the ``prefix+latest`` layout, latest values) to Redis and
publishes ``features`` events; it stops once the topics are drained. The
summary shows the newest transaction's streamed vector next to the vector a
request at its time computes from the Redis prefix logs (one read, as
:mod:`rtml_features.request_vector` computes it) — the same values — or, in
the ``latest`` layout, its customer's and terminal's hashes.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from rtml_cli.demo_steps.context import DemoContext, DemoError
from rtml_common.config import KafkaSettings, RedisSettings
from rtml_feature_pipeline import kafka_engine
from rtml_feature_pipeline.checkpoint import checkpoint_key
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.generic_path import UnservableFeatureSet, uses_classic_path
from rtml_feature_pipeline.worker import FeatureWorker
from rtml_features.online_store.redis.connection import connect
from rtml_features.online_store.redis.prefix_reader import PrefixLogReader
from rtml_features.online_store.redis.store import RedisOnlineStore
from rtml_features.request_vector import RequestVectors

SESSION_TIMEOUT_MS = 6000


def compute_features(ctx: DemoContext) -> None:
    """Run the feature worker until the topics are drained; show a sample."""
    bootstrap = ctx.require_kafka()
    redis_url = ctx.client_env.get("RTML_REDIS_URL")
    if not redis_url:
        raise DemoError("no Redis: the stack step must start the redis component")
    settings = Settings(consumer_group=f"rtml-demo-features-{ctx.run_id}")
    workers: list[FeatureWorker] = []
    try:
        run = kafka_engine.run(
            settings,
            KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=SESSION_TIMEOUT_MS),
            RedisSettings(url=redis_url), max_idle_s=3, install_signal_handlers=False,
            on_worker=workers.append)
    except UnservableFeatureSet as exc:  # the served set needs a setting the worker lacks
        raise DemoError(f"the feature worker cannot serve this feature set: {exc}") from None
    # The demo's group is used once: drop its checkpoint (and the worker's "my writes are in
    # Redis" marker beside it) rather than leave them in Redis.
    worker = workers[0]
    feature_set = worker.feature_set
    key = checkpoint_key(settings.consumer_group, feature_set.name, feature_set.version)
    connect(redis_url).delete(key, f"{key}:online-store-written")
    if run.vectors_published == 0:
        raise DemoError("the feature worker published no vectors: is the replay step missing?")
    ctx.features = run
    ctx.add_section("Features", _section(run, worker, redis_url, settings.online_layout))
    ctx.next_commands.append(
        ("python -m rtml_feature_pipeline", "run the feature worker as a service (Ctrl-C stops)"))


def _section(run: Any, worker: FeatureWorker, redis_url: str, layout: str) -> Table:
    """A sample vector beside what Redis serves for it where this step can read it back:
    the classic path's prefix logs or latest hashes, a generic set's latest hashes; else
    (a generic set's request-time layout) what the worker did."""
    if uses_classic_path(worker.feature_set):
        return _summary(run, worker, redis_url, "prefix" in layout)
    if layout == "latest" and hasattr(worker.computer, "recent"):
        return _summary(run, worker, redis_url, False)
    return _counts(run, worker)


def _counts(run: Any, worker: FeatureWorker) -> Table:
    """What the worker did, for a set the generic streaming computer serves (no classic
    sample vector to set beside a request-time read)."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    feature_set = worker.feature_set
    table.add_row("feature set", f"{feature_set.name} ({len(feature_set.names)} features, "
                                 f"schema {feature_set.schema.name!r})")
    table.add_row("vectors published", f"{run.vectors_published:,}")
    table.add_row("events applied", f"{run.events_applied:,}")
    table.add_row("revisions / late", f"{run.revisions:,} / {run.late_events:,}")
    return table


def _summary(run: Any, worker: FeatureWorker, redis_url: str, prefix_logs: bool) -> Table:
    table = Table(show_header=True, box=None)
    table.add_column("feature")
    table.add_column("streamed vector", justify="right")
    table.add_column("Redis (request-time, prefix logs)" if prefix_logs
                     else "Redis (customer / terminal hash)", justify="right")
    newest = max(worker.computer.recent.values(), key=lambda e: (e.time_ms, e.transaction_id))
    customer_id, terminal_id = newest.ids
    client = connect(redis_url)
    if prefix_logs:
        logs = PrefixLogReader(client, worker.feature_set).read(
            newest.transaction_id, newest.time_ms,
            {"customer_id": customer_id, "terminal_id": terminal_id})
        online = RequestVectors(worker.feature_set).compute(
            newest.transaction_id, newest.time_ms, {"amount": newest.amount}, logs)
    else:
        stored = RedisOnlineStore(redis_url, ttl_s=60).read(
            worker.feature_set, [("customer", str(customer_id)), ("terminal", str(terminal_id))])
        online = {name: value for entry in stored if entry is not None
                  for name, value in entry.values.items()}
    for name in worker.feature_set.names:
        table.add_row(name, f"{newest.vector[name]:.4f}",
                      f"{online[name]:.4f}" if name in online else "(row feature)")
    rate = run.events_applied / run.busy_seconds if run.busy_seconds else 0.0
    table.caption = (
        f"{run.vectors_published:,} vectors ({run.revisions:,} revisions, {run.late_events} late) "
        f"from {run.events_applied:,} events at {rate:,.0f} events/s; "
        f"sample: transaction {newest.transaction_id}, customer {customer_id}, "
        f"terminal {terminal_id}"
    )
    return table
