"""Broker produce→consume latency over run time: is the local broker the latency floor?

The scorer's event→prediction p99 at 2,000 tx/s (issue #5) and the feature
pipeline's freshness p99 (issue #3) both miss their targets, and both show
records already seconds old when the consumer receives them — before any
service code runs. This benchmark takes the services out: a pacer process
produces small records at a steady rate to a fresh broker, a plain consumer
(the services' fetch settings) reads them, and latency = receive time -
record timestamp is reported per 5-second bin of the run, so a tail that
grows with run length (log size) shows as a trend, not an average.

Variants (each on a broker of its own): the Tansu broker in memory (what
``rtml stack up`` and the tests use) and, when s3rver is available, in its
durable (S3) mode; producer ``linger.ms`` 1, 5 (the services' default) and 20.

``python bench/broker_latency.py --quick --json`` (15 s per variant) prints one
JSON object last; the full run (60 s per variant) also rewrites its section of
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from rtml_common.kafka.admin import ensure_topics
from rtml_localstack.testing import KafkaBroker

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Broker latency floor"
TOPIC = "latency-probe"
BIN_S = 5.0
DRAIN_S = 3.0
PAYLOAD = b"x" * 600  # about a FeatureVector's JSON size


def pace(bootstrap: str, rate: float, seconds: float, linger_ms: int,
         idempotent: bool = False) -> None:
    """Produce ``rate`` records/s for ``seconds`` (runs as the pacer subprocess)."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "linger.ms": linger_ms,
                              "compression.type": "lz4",
                              "queue.buffering.max.messages": 500_000}
    if idempotent:  # what the services' EventProducer does by default
        config.update({"enable.idempotence": True, "acks": "all"})
    producer = Producer(config)
    start = time.perf_counter()
    sent = 0
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
        due = int(elapsed * rate) + 1
        while sent < due:
            producer.produce(TOPIC, PAYLOAD, key=str(sent % 1000).encode())
            sent += 1
        producer.poll(0)
        time.sleep(0.001)
    producer.flush(30)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def run_variant(name: str, rate: float, seconds: float, linger_ms: int, durable: bool,
                tmp: Path, idempotent: bool = False) -> dict[str, Any]:
    broker = KafkaBroker.start_new(tmp / f"kafka-{uuid.uuid4().hex[:6]}", create_topics=False,
                                   durable=durable)
    try:
        ensure_topics(broker.bootstrap_servers, [TOPIC], partitions={TOPIC: 4},
                      replication_factor=1)
        consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers,
                             "group.id": f"probe-{uuid.uuid4().hex}", "enable.auto.commit": False,
                             "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10,
                             "session.timeout.ms": 6000})
        consumer.subscribe([TOPIC])
        while not consumer.assignment():
            consumer.poll(0.1)
        pacer = subprocess.Popen([sys.executable, __file__, "--pace", broker.bootstrap_servers,
                                  str(rate), str(seconds), str(linger_ms),
                                  "1" if idempotent else "0"])
        samples: list[tuple[float, float]] = []  # (produce time s, latency ms)
        done_at: float | None = None
        while done_at is None or time.monotonic() - done_at < DRAIN_S:
            now_ms = time.time() * 1000
            for message in consumer.consume(1000, 0.02):
                if message.error() is None:
                    stamp = message.timestamp()[1]
                    samples.append((stamp / 1000, now_ms - stamp))
            if done_at is None and pacer.poll() is not None:
                done_at = time.monotonic()
        consumer.close()
    finally:
        broker.close()
    if not samples:
        raise RuntimeError(f"{name}: no record came back")
    first = min(t for t, _ in samples)
    bins: dict[int, list[float]] = {}
    for produced, latency in samples:
        bins.setdefault(int((produced - first) // BIN_S), []).append(latency)
    latencies = [lat for _, lat in samples]
    return {
        "variant": name, "rate": rate, "seconds": seconds, "linger_ms": linger_ms,
        "durable": durable, "idempotent": idempotent, "received": len(samples),
        "expected": int(rate * seconds),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
        "p99_by_bin_ms": [round(percentile(bins[b], 99), 1) for b in sorted(bins)],
        "p50_by_bin_ms": [round(statistics.median(bins[b]), 1) for b in sorted(bins)],
    }


def durable_available() -> bool:
    from rtml_localstack.launchers import S3Launcher

    return S3Launcher().unavailable() is None


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [SECTION, "",
             "Why the platform's producers linger 20 ms (see docs/scorer.md). "
             f"Measured {m['date']} with `python bench/broker_latency.py` on {m['nproc']} cores, "
             f"Python {m['python']}, 1-minute load average {m['load_average_1m']} at start; one "
             f"run per variant. A pacer process produces 600-byte records at a steady rate to a "
             f"fresh Tansu broker (4 partitions); a plain consumer (fetch.wait.max.ms 10) reads "
             f"them; latency = receive time - record timestamp; p99 per {BIN_S:g}-second bin "
             "of produce time.", "",
             "| variant | rate/s | s | received | p50 ms | p99 ms | max ms | p99 per bin (ms) |",
             "|---|---|---|---|---|---|---|---|"]
    for v in result["variants"]:
        lines.append(f"| {v['variant']} | {v['rate']:,.0f} | {v['seconds']:g} | "
                     f"{v['received']:,}/{v['expected']:,} | {v['p50_ms']} | {v['p99_ms']} | "
                     f"{v['max_ms']} | {', '.join(str(x) for x in v['p99_by_bin_ms'])} |")
    return "\n".join(lines) + "\n"


def write_docs(text: str) -> None:
    current = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if SECTION in current:
        head, _, rest = current.partition(SECTION)
        tail = rest.split("\n## ", 1)
        current = head + text + ("\n## " + tail[1] if len(tail) > 1 else "")
    else:
        current = current.rstrip() + "\n\n" + text
    DOCS.write_text(current)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="15 s per variant")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--rate", type=float, default=2000.0, help="records per second")
    parser.add_argument("--pace", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pace:
        pace(args.pace[0], float(args.pace[1]), float(args.pace[2]), int(args.pace[3]),
             args.pace[4] == "1")
        return 0
    seconds = 15.0 if args.quick else 60.0
    variants = [("memory, linger 1 ms", 1, False, False),
                ("memory, linger 20 ms", 20, False, False)]
    if not args.quick:  # 5 ms: the services' EventProducer default before this benchmark
        variants.insert(1, ("memory, linger 5 ms", 5, False, False))
        variants.append(("memory, linger 20 ms, idempotent + acks=all", 20, False, True))
    if not args.quick and durable_available():
        variants.append(("durable (S3), linger 20 ms", 20, True, False))
    result: dict[str, Any] = {
        "benchmark": "broker_latency", "quick": args.quick,
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                    "date": datetime.now(UTC).date().isoformat(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
        "variants": []}
    with tempfile.TemporaryDirectory(prefix="rtml-broker-latency-") as tmp:
        for name, linger, durable, idempotent in variants:
            variant = run_variant(name, args.rate, seconds, linger, durable, Path(tmp),
                                  idempotent)
            result["variants"].append(variant)
            print(f"{name}: p50 {variant['p50_ms']} ms, p99 {variant['p99_ms']} ms, "
                  f"p99 by {BIN_S:g} s bin {variant['p99_by_bin_ms']}", file=sys.stderr)
    if not args.quick:
        write_docs(markdown(result))
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
