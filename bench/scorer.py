"""Scorer benchmarks: catch-up throughput and event→prediction latency at a steady rate.

Both against real servers started here (Tansu broker, MLflow), with the
model a default training run produces — XGBoost, 100 trees of depth 6 over
the 15 baseline features — as champion, plus two shadows at 100 % sampling
(two more 100-tree XGBoost models; ``--river-shadow`` makes the second one a
River online model instead, learning nothing here since no labels flow):

* **throughput** — N feature vectors are produced first; one scorer then
  catches up. Rate = vectors / the scorer's busy time (first batch start to
  last batch end: group join and idle waiting excluded); every vector yields
  one prediction and two shadow scores. Target >= 30,000 events/s.
* **latency** — a producer subprocess paces vectors at 2,000 tx/s while the
  scorer runs; latency = the prediction record's Kafka timestamp (set when
  the scorer produced it) minus the features record's timestamp (set when
  the vector was produced). Both clients are on this machine, so the clocks
  agree. p50/p99 after a warm-up second, target p99 <= 50 ms.

The latency run also splits the time: the age of a batch's oldest record when
the scorer gets it, the scorer's handling time per batch, and the consumer
loop's flushes. ``--only floor`` measures the broker alone (the same pacer, a
plain consumer with the scorer's fetch settings, no scoring); a full run
includes it.

``--quick`` shrinks both; ``--json`` prints one JSON object on the last line;
``--only throughput|latency|floor`` runs one part (never rewrites the docs).
A full run (no ``--quick``) rewrites the ``## Scorer`` section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import xgboost as xgb
from benchlib import machine, write_section
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from rtml_common.config import KafkaSettings, MlflowSettings
from rtml_common.events import FeatureVector
from rtml_common.kafka.producer import producer_config
from rtml_common.serde import headers_for
from rtml_features.baseline import BASELINE
from rtml_localstack.testing import KafkaBroker, MlflowServer
from rtml_models.registry.mlflow import MlflowRegistry
from rtml_models.river import RiverModel, default_online_model
from rtml_models.xgboost import XGBoostModel
from rtml_scorer import service
from rtml_scorer.config import Settings
from rtml_scorer.scorer import Scorer

SECTION = "## Scorer"
TARGETS = {"throughput_events_per_s": 30_000, "latency_p99_ms": 50}
NAMES = BASELINE.names
T0 = datetime(2018, 6, 1, tzinfo=UTC)
HEADERS = headers_for(FeatureVector)
#: How long the latency run's scorer must be idle, after the pacer exits, to stop.
DRAIN_S = 2.0


def xgb_model(seed: int, trees: int = 100) -> XGBoostModel:
    rng = np.random.default_rng(seed)
    rows = rng.gamma(2.0, 20.0, (5000, len(NAMES)))
    labels = (rows[:, 0] + rows[:, 5] + rng.normal(0, 30, 5000) > 100).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.1},
                        xgb.DMatrix(rows, label=labels, feature_names=NAMES), trees)
    return XGBoostModel(booster)


def register_models(registry: MlflowRegistry, name: str, river_shadow: bool) -> dict[str, str]:
    def register(model: Any, alias: str) -> None:
        version = registry.register(name, model, feature_set=BASELINE).version
        registry.set_alias(name, alias, version)

    register(xgb_model(1), "champion")
    register(xgb_model(2), "challenger")
    register(RiverModel(default_online_model(), NAMES) if river_shadow else xgb_model(3),
             "shadow-2")
    return registry.aliases(name)


def vector_json(i: int, rng: np.random.Generator) -> tuple[bytes, bytes]:
    customer = f"c{i % 5000}"
    values = rng.gamma(2.0, 20.0, len(NAMES)).round(2).tolist()
    value = orjson.dumps({
        "transaction_id": f"tx-{i}", "customer_id": customer, "terminal_id": f"t{i % 997}",
        "event_time": T0 + timedelta(milliseconds=i), "amount": values[0],
        "feature_set": BASELINE.name, "feature_set_version": BASELINE.version,
        "features": dict(zip(NAMES, values, strict=True)), "revision": 0,
        "computed_at": datetime.now(UTC)})
    return customer.encode(), value


def producer_for(bootstrap: str) -> Producer:
    """The platform's own producer settings (what the feature pipeline writes ``features``
    with), with room for the catch-up run's burst."""
    return Producer(producer_config(KafkaSettings(bootstrap_servers=bootstrap),
                                    **{"queue.buffering.max.messages": 500_000}))


def produce_vectors(bootstrap: str, n: int) -> None:
    producer = producer_for(bootstrap)
    rng = np.random.default_rng(0)
    for i in range(n):
        key, value = vector_json(i, rng)
        while True:
            try:
                producer.produce("features", value=value, key=key, headers=HEADERS)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)


def pace(bootstrap: str, rate: float, seconds: float) -> None:
    """Produce vectors at ``rate``/s for ``seconds`` (the latency run's subprocess)."""
    producer = producer_for(bootstrap)
    rng = np.random.default_rng(1)
    tick = 0.005
    per_tick = rate * tick
    started = time.perf_counter()
    sent = 0
    while sent < rate * seconds:
        due = int((time.perf_counter() - started) / tick * per_tick) + 1
        while sent < min(due, rate * seconds):
            key, value = vector_json(sent, rng)
            producer.produce("features", value=value, key=key, headers=HEADERS)
            sent += 1
        producer.poll(0)
        time.sleep(max(0.0, started + sent / rate - time.perf_counter()))
    producer.flush(30)


def read_timestamps(bootstrap: str, topic: str, champion_only: bool = False) -> dict[str, int]:
    """transaction id -> record timestamp (ms) of every record of ``topic``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"b-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    stamps: dict[str, int] = {}
    last = time.monotonic()
    while time.monotonic() - last < 2.0:
        for message in consumer.consume(5000, 0.2):
            if message.error() is None:
                stamps[orjson.loads(message.value())["transaction_id"]] = message.timestamp()[1]
                last = time.monotonic()
    consumer.close()
    return stamps


def kafka_settings(broker: KafkaBroker, **overrides: Any) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=broker.bootstrap_servers, session_timeout_ms=6000,
                         idempotent_producer=False, **overrides)


def run_scorer(broker: KafkaBroker, mlflow: MlflowServer, name: str, tmp: Path,
               on_scorer: Any = None, max_idle_s: float | None = 3.0,
               stop: threading.Event | None = None, **kafka: Any) -> service.ScorerRun:
    return service.run(Settings(model_name=name, consumer_group=f"bench-{name}"),
                       kafka_settings(broker, **kafka),
                       MlflowSettings(tracking_uri=mlflow.tracking_uri), max_idle_s=max_idle_s,
                       install_signal_handlers=False, workdir=tmp / f"serving-{name}",
                       on_scorer=on_scorer, stop=stop)


def bench_throughput(mlflow: MlflowServer, n: int, river_shadow: bool,
                     tmp: Path) -> dict[str, Any]:
    name = f"bench-tput-{uuid.uuid4().hex[:6]}"
    aliases = register_models(MlflowRegistry(mlflow.tracking_uri), name, river_shadow)
    broker = KafkaBroker.start_new(tmp / f"kafka-{name}")
    try:
        started = time.perf_counter()
        produce_vectors(broker.bootstrap_servers, n)
        produce_s = time.perf_counter() - started
        run = run_scorer(broker, mlflow, name, tmp)
    finally:
        broker.close()
    return {
        "vectors": n, "models": aliases, "river_shadow": river_shadow,
        "produce_seconds": round(produce_s, 2),
        "predictions": run.predictions, "shadow_scores": run.shadow_scores,
        "busy_seconds": round(run.busy_seconds, 3),
        "events_per_s": round(n / run.busy_seconds),
        "outputs_per_s": round((run.predictions + run.shadow_scores) / run.busy_seconds),
        "batches": run.loop.batches,
    }


def bench_latency(mlflow: MlflowServer, rate: float, seconds: float, tmp: Path,
                  poll_timeout_s: float) -> dict[str, Any]:
    name = f"bench-lat-{uuid.uuid4().hex[:6]}"
    register_models(MlflowRegistry(mlflow.tracking_uri), name, False)
    broker = KafkaBroker.start_new(tmp / f"kafka-{name}")
    pacers: list[subprocess.Popen[bytes]] = []
    scorers: list[Scorer] = []
    flushes: list[float] = []  # the consumer loop's flush before each commit (blocks it)
    stop = threading.Event()
    try:
        def start_pacer_once_assigned(scorer: Scorer) -> None:
            while not any(t == "features" for t, _ in scorer.assigned()):
                time.sleep(0.01)
            pacer = subprocess.Popen(
                [sys.executable, __file__, "--pace", broker.bootstrap_servers, str(rate),
                 str(seconds)], stderr=subprocess.PIPE)
            pacers.append(pacer)
            # The scorer runs until the pacer is done and its records are drained: no
            # batch for DRAIN_S (an idle timeout from the start would race the pacer's
            # start-up, whose imports take seconds).
            pacer.wait()
            seen = -1
            while seen != scorer.batches:
                seen = scorer.batches
                time.sleep(DRAIN_S)
            stop.set()

        def attach(scorer: Scorer) -> None:
            scorers.append(scorer)
            flush = scorer.producer.flush

            def timed_flush(timeout_s: float | None = None) -> None:
                started = time.perf_counter()
                try:
                    flush(timeout_s)
                finally:
                    flushes.append(time.perf_counter() - started)

            scorer.producer.flush = timed_flush  # type: ignore[method-assign]
            threading.Thread(target=start_pacer_once_assigned, args=(scorer,),
                             daemon=True).start()

        run = run_scorer(broker, mlflow, name, tmp, on_scorer=attach, max_idle_s=None,
                         stop=stop, poll_timeout_s=poll_timeout_s)
        _, stderr = pacers[0].communicate(timeout=120)
        if pacers[0].returncode != 0:
            raise RuntimeError(f"pacer failed: {stderr.decode()[-2000:]}")
        produced = read_timestamps(broker.bootstrap_servers, "features")
        predicted = read_timestamps(broker.bootstrap_servers, "predictions")
    finally:
        broker.close()
    order = sorted(produced, key=produced.__getitem__)
    warmup = int(rate)  # the pacer's first second (its start-up, the scorer's first fetches)
    steady = [predicted[tx] - produced[tx] for tx in order[warmup:] if tx in predicted]
    quantiles = statistics.quantiles(steady, n=1000)
    ages = [age for age, _ in scorers[0].batch_timings]
    handles = [seconds_ * 1000 for _, seconds_ in scorers[0].batch_timings]
    return {
        "tx_rate": rate, "seconds": seconds, "samples": len(steady),
        # Where it goes: the oldest record's age when its batch is handed to the scorer
        # (broker + fetch + queueing), the scorer's own time per batch, and the flushes.
        "batch_wait_p50_ms": round(statistics.median(ages), 2),
        "batch_wait_p99_ms": round(percentile(ages, 99), 2),
        "handle_p50_ms": round(statistics.median(handles), 2),
        "handle_p99_ms": round(percentile(handles, 99), 2),
        "handle_max_ms": round(max(handles), 2),
        "flushes": len(flushes),
        "flush_p50_ms": round(statistics.median(flushes) * 1000, 2) if flushes else None,
        "flush_max_ms": round(max(flushes) * 1000, 2) if flushes else None,
        "warmup_samples_dropped": warmup, "missing": len(produced) - len(predicted),
        "poll_timeout_ms": poll_timeout_s * 1000,
        "p50_ms": round(statistics.median(steady), 2), "p99_ms": round(quantiles[989], 2),
        "p999_ms": round(quantiles[998], 2), "max_ms": max(steady),
        "predictions": run.predictions, "shadow_scores": run.shadow_scores,
        "mean_batch_rows": round(run.predictions / max(1, run.loop.batches), 1),
    }


def bench_floor(rate: float, seconds: float, tmp: Path, poll_timeout_s: float
                ) -> dict[str, Any]:
    """The broker's produce→consume latency alone: the same pacer, a plain consumer.

    Latency = when a record is returned by ``consume`` minus its timestamp, with the
    scorer's consumer settings (``fetch.wait.max.ms`` 10, the same poll timeout): what
    no scorer can go below on this machine.
    """
    broker = KafkaBroker.start_new(tmp / f"kafka-floor-{uuid.uuid4().hex[:6]}")
    try:
        consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers,
                             "group.id": f"floor-{uuid.uuid4().hex}", "enable.auto.commit": False,
                             "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10,
                             "session.timeout.ms": 6000})
        consumer.subscribe(["features"])
        while not consumer.assignment():
            consumer.poll(0.1)
        pacer = subprocess.Popen([sys.executable, __file__, "--pace", broker.bootstrap_servers,
                                  str(rate), str(seconds)], stderr=subprocess.PIPE)
        latencies: list[tuple[int, float]] = []
        done_at: float | None = None
        while done_at is None or time.monotonic() - done_at < DRAIN_S:
            messages = consumer.consume(1000, poll_timeout_s)
            now_ms = time.time() * 1000
            latencies += [(m.timestamp()[1], now_ms - m.timestamp()[1]) for m in messages
                          if m.error() is None]
            if done_at is None and pacer.poll() is not None:
                done_at = time.monotonic()
        consumer.close()
    finally:
        broker.close()
    steady = [lat for _, lat in sorted(latencies)[int(rate):]]
    return {"tx_rate": rate, "seconds": seconds, "samples": len(steady),
            "p50_ms": round(statistics.median(steady), 2),
            "p99_ms": round(percentile(steady, 99), 2),
            "p999_ms": round(percentile(steady, 99.9), 2), "max_ms": round(max(steady), 2)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def markdown(result: dict[str, Any]) -> str:
    m, t, lat = result["machine"], result["throughput"], result["latency"]
    tr = result.get("throughput_river")
    lines = [
        SECTION,
        "",
        f"Measured {m['date']} with `python bench/scorer.py` on {m['nproc']} cores "
        f"({m['cpu']}), Python {m['python']}, 1-minute load average {m['load_average_1m']} at "
        "start. Broker (Tansu), MLflow and the scorer share the same cores. Champion: XGBoost, "
        "100 trees of depth 6, 15 baseline features; two shadows at 100 % sampling.",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        f"| throughput, champion + 2 XGBoost shadows ({t['vectors']:,} vectors) | "
        f"{t['events_per_s']:,} events/s ({t['outputs_per_s']:,} outputs/s) | "
        f"≥ {TARGETS['throughput_events_per_s']:,} events/s |",
    ]
    if tr:
        lines.append(f"| same, second shadow a River model ({tr['vectors']:,} vectors) | "
                     f"{tr['events_per_s']:,} events/s | |")
    lines += [
        f"| event → prediction at {lat['tx_rate']:,.0f} tx/s | p50 {lat['p50_ms']} ms, "
        f"p99 {lat['p99_ms']} ms, p99.9 {lat['p999_ms']} ms | p99 ≤ "
        f"{TARGETS['latency_p99_ms']} ms |",
        "",
        f"Throughput run: {t['busy_seconds']} s busy, {t['batches']:,} batches. Latency run: "
        f"{lat['samples']:,} samples over {lat['seconds']} s after dropping "
        f"{lat['warmup_samples_dropped']:,} warm-up samples, max {lat['max_ms']} ms, "
        f"{lat['mean_batch_rows']} rows per batch on average, consumer poll timeout "
        f"{lat['poll_timeout_ms']:g} ms; the pacer writes `features` with the platform's "
        "producer settings (linger 20 ms, lz4, idempotent, acks=all), as the feature pipeline "
        "does; the scorer's outputs are non-idempotent. Latency = prediction record "
        "timestamp - features record timestamp.",
    ]
    floor = result.get("floor")
    lines += [
        "",
        f"Where the latency goes: a batch's oldest record is p50 {lat['batch_wait_p50_ms']} ms, "
        f"p99 {lat['batch_wait_p99_ms']} ms old when the scorer gets it (broker, fetch, "
        f"queueing); the scorer's own handling takes p50 {lat['handle_p50_ms']} ms, p99 "
        f"{lat['handle_p99_ms']} ms (max {lat['handle_max_ms']} ms) per batch; the "
        f"{lat['flushes']} flushes before commits took at most {lat['flush_max_ms']} ms.",
    ]
    if floor:
        lines += [
            "",
            f"Broker floor (`--only floor`: the same pacer, a plain consumer, no scoring, "
            f"{floor['samples']:,} samples): p50 {floor['p50_ms']} ms, p99 {floor['p99_ms']} ms, "
            f"p99.9 {floor['p999_ms']} ms, max {floor['max_ms']} ms (run after the latency "
            "run; other work on the machine moves both).",
        ]
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs (CI smoke run)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--river-shadow", action="store_true",
                        help="also measure throughput with a River model as second shadow")
    parser.add_argument("--only", choices=("throughput", "latency", "floor"),
                        help="run one of the two benchmarks (comparing variants; never "
                        "rewrites docs/benchmarks.md)")
    parser.add_argument("--pace", nargs=3, metavar=("BOOTSTRAP", "RATE", "SECONDS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pace:
        pace(args.pace[0], float(args.pace[1]), float(args.pace[2]))
        return 0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        mlflow = MlflowServer.start_new(tmp / "mlflow")
        try:
            result: dict[str, Any] = {
                "benchmark": "scorer",
                "quick": args.quick,
                "machine": machine(),
            }
            if args.only in (None, "throughput"):
                result["throughput"] = bench_throughput(
                    mlflow, 30_000 if args.quick else 200_000, False, tmp)
            if args.river_shadow and args.only in (None, "throughput"):
                result["throughput_river"] = bench_throughput(
                    mlflow, 10_000 if args.quick else 50_000, True, tmp)
            if args.only == "floor":  # the broker alone, for comparison (see bench_floor)
                result["floor"] = bench_floor(2000.0, 8 if args.quick else 30, tmp, 0.005)
            elif args.only != "throughput":
                result["latency"] = bench_latency(mlflow, 2000.0, 8 if args.quick else 30, tmp,
                                                  0.005)
                if args.only is None and not args.quick:  # the broker's share, for the docs
                    result["floor"] = bench_floor(2000.0, 30, tmp, 0.005)
            result["targets"] = TARGETS
        finally:
            mlflow.close()
    if args.only is None:
        if not args.quick:
            write_section(SECTION, markdown(result))
        print(markdown(result) if not args.json else "", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
